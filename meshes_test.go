package guestgate_test

// deploy/istio and deploy/envoy-gateway: the base under a mesh's own
// proxy, checked like the base, with the meshes' objects decoded strictly
// into those projects' own Go types: istio.io/api's protobuf messages
// (protojson refuses unknown fields) and Envoy Gateway's and the Gateway
// API's Kubernetes types (the strict serializer). The IstioOperator
// wrapper around meshConfig is Istio's installer's type (istio.io/istio,
// not served as a library), so it is checked by structure: exactly
// apiVersion, kind and spec.meshConfig, the last one decoded strictly.

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networkingv1beta1 "istio.io/api/networking/v1beta1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

const (
	istioOverlay        = "deploy/istio"
	istioMeshConfig     = "deploy/istio/meshconfig.yaml"
	envoyGatewayOverlay = "deploy/envoy-gateway"
	appPort             = 8080
	issuerPort          = 8181
	guestgateGRPCPort   = 9191
)

// protoSpec decodes an object's spec into msg, refusing unknown fields.
func protoSpec(js []byte, msg proto.Message) error {
	var obj struct {
		Spec any `json:"spec"`
	}
	if err := json.Unmarshal(js, &obj); err != nil {
		return err
	}
	return protoFrom(obj.Spec, msg)
}

func protoFrom(v any, msg proto.Message) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return protojson.UnmarshalOptions{}.Unmarshal(b, msg)
}

// meshProviders reads meshconfig.yaml: the IstioOperator by structure, its
// meshConfig strictly into Istio's MeshConfig.
func meshProviders(src []byte) (*meshv1alpha1.MeshConfig, error) {
	var op struct {
		APIVersion string         `json:"apiVersion"`
		Kind       string         `json:"kind"`
		Spec       map[string]any `json:"spec"`
	}
	// Strict: a duplicate or unknown top-level key is an error.
	if err := sigsyaml.UnmarshalStrict(src, &op); err != nil {
		return nil, fmt.Errorf("IstioOperator: %w", err)
	}
	if op.APIVersion != "install.istio.io/v1alpha1" || op.Kind != "IstioOperator" {
		return nil, fmt.Errorf("apiVersion %q kind %q, want install.istio.io/v1alpha1 IstioOperator", op.APIVersion, op.Kind)
	}
	if len(op.Spec) != 1 || op.Spec["meshConfig"] == nil {
		return nil, fmt.Errorf("spec: want meshConfig alone, have %v", slices.Sorted(maps.Keys(op.Spec)))
	}
	mc := new(meshv1alpha1.MeshConfig)
	if err := protoFrom(op.Spec["meshConfig"], mc); err != nil {
		return nil, fmt.Errorf("spec.meshConfig: %w", err)
	}
	return mc, nil
}

// checkIstio reports every way the mesh objects could let a request reach
// the app without guestgate's yes.
func checkIstio(m *manifests, mc *meshv1alpha1.MeshConfig) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	providers := map[string]*meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider{}
	for _, p := range mc.GetExtensionProviders() {
		if g := p.GetEnvoyExtAuthzGrpc(); g != nil {
			providers[p.GetName()] = g
		}
	}
	var policies []*securityv1beta1.AuthorizationPolicy
	var entries []*networkingv1beta1.ServiceEntry
	for _, o := range m.custom {
		switch o.APIVersion + " " + o.Kind {
		case "security.istio.io/v1 AuthorizationPolicy":
			ap := new(securityv1beta1.AuthorizationPolicy)
			if err := protoSpec(o.JSON, ap); err != nil {
				fail("AuthorizationPolicy %s: %w", o.Name, err)
				continue
			}
			policies = append(policies, ap)
		case "networking.istio.io/v1 ServiceEntry":
			se := new(networkingv1beta1.ServiceEntry)
			if err := protoSpec(o.JSON, se); err != nil {
				fail("ServiceEntry %s: %w", o.Name, err)
				continue
			}
			entries = append(entries, se)
		default:
			fail("%s %s: a kind this check does not know", o.APIVersion, o.Kind)
		}
	}
	podLabels := labels.Set(m.templateLabels())
	checked := false
	for _, ap := range policies {
		if ap.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM || !labels.SelectorFromSet(ap.GetSelector().GetMatchLabels()).Matches(podLabels) {
			continue
		}
		g := providers[ap.GetProvider().GetName()]
		if g == nil {
			fail("AuthorizationPolicy: provider %q is no envoyExtAuthzGrpc extension provider of the mesh", ap.GetProvider().GetName())
			continue
		}
		checked = true
		if err := checkIstioRules(ap.GetRules()); err != nil {
			fail("AuthorizationPolicy rules: %w", err)
		}
		if err := checkIstioProvider(g, entries); err != nil {
			fail("extension provider %q: %w", ap.GetProvider().GetName(), err)
		}
	}
	if !checked {
		fail("no CUSTOM AuthorizationPolicy selects the app's pods: nothing asks guestgate")
	}
	return errors.Join(errs...)
}

// checkIstioRules: a CUSTOM policy checks only the requests its rules
// match, so they must match every request to the app: its port, nothing
// narrower.
func checkIstioRules(rules []*securityv1beta1.Rule) error {
	if len(rules) == 0 {
		return errors.New("none: a CUSTOM policy without rules checks nothing")
	}
	covered := false
	for i, r := range rules {
		if len(r.GetFrom()) > 0 || len(r.GetWhen()) > 0 || len(r.GetTo()) != 1 {
			return fmt.Errorf("rule %d: want one to.operation and no from or when (those narrow what is checked)", i)
		}
		op := r.GetTo()[0].GetOperation()
		narrowed := len(op.GetHosts()) + len(op.GetNotHosts()) + len(op.GetMethods()) + len(op.GetNotMethods()) +
			len(op.GetPaths()) + len(op.GetNotPaths()) + len(op.GetNotPorts())
		if narrowed > 0 {
			return fmt.Errorf("rule %d: only ports, not hosts, methods or paths: any of those leaves some requests to the app unchecked", i)
		}
		if slices.Contains(op.GetPorts(), fmt.Sprint(appPort)) {
			covered = true
		}
	}
	if !covered {
		return fmt.Errorf("no rule covers the app's port %d", appPort)
	}
	return nil
}

func checkIstioProvider(g *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider, entries []*networkingv1beta1.ServiceEntry) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if g.GetFailOpen() {
		fail("failOpen: true lets every request through while guestgate is down")
	}
	if err := checkDuration("timeout", g.GetTimeout(), maxCheckTimeout); err != nil {
		fail("%w", err)
	}
	if s := g.GetStatusOnError(); s != "" && !(strings.HasPrefix(s, "4") || strings.HasPrefix(s, "5")) {
		fail("statusOnError %q: an error must answer 4xx or 5xx", s)
	}
	if b := g.GetIncludeRequestBodyInCheck(); b == nil || b.GetMaxRequestBytes() == 0 || b.GetMaxRequestBytes() > maxBufferedAuthzBytes {
		fail("includeRequestBodyInCheck.maxRequestBytes: want 1..%d (policies read the body)", maxBufferedAuthzBytes)
	}
	// The service must be guestgate in the same pod, on loopback.
	local := false
	for _, se := range entries {
		if !slices.Contains(se.GetHosts(), g.GetService()) {
			continue
		}
		addrs := []string{}
		for _, ep := range se.GetEndpoints() {
			addrs = append(addrs, ep.GetAddress())
		}
		ports := []uint32{}
		for _, p := range se.GetPorts() {
			ports = append(ports, p.GetNumber())
		}
		local = slices.Equal(addrs, []string{"127.0.0.1"}) && slices.Equal(ports, []uint32{guestgateGRPCPort}) &&
			se.GetResolution() == networkingv1beta1.ServiceEntry_STATIC && slices.Equal(se.GetExportTo(), []string{"."})
	}
	if !local || g.GetPort() != guestgateGRPCPort {
		fail("service %s:%d: want a ServiceEntry, exported to its namespace only, of 127.0.0.1:%d (guestgate in the pod)", g.GetService(), g.GetPort(), guestgateGRPCPort)
	}
	return errors.Join(errs...)
}

func mustIstio(t *testing.T) (*manifests, *meshv1alpha1.MeshConfig) {
	t.Helper()
	m := mustRender(t, istioOverlay)
	src, err := os.ReadFile(istioMeshConfig)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := meshProviders(src)
	if err != nil {
		t.Fatalf("%s: %v", istioMeshConfig, err)
	}
	return m, mc
}

func TestIstioOverlayFailsClosed(t *testing.T) {
	m, mc := mustIstio(t)
	if m.container("envoy") != nil || m.configMaps["envoy-config"] != nil {
		t.Error("the base's Envoy is still in the pod: istio-proxy takes its place")
	}
	if err := checkPodSafety(m, publicPorts{appPort, issuerPort}); err != nil {
		t.Errorf("%s is unsafe:\n%v", istioOverlay, err)
	}
	if err := checkIstio(m, mc); err != nil {
		t.Errorf("%s is unsafe:\n%v", istioOverlay, err)
	}
}

// Each edit is one Istio would run; the decode or the check must refuse it.
func TestIstioCheckRejectsUnsafeObjects(t *testing.T) {
	meshSrc, err := os.ReadFile(istioMeshConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, file, old, new, wantErr string
	}{
		{"misspelled mesh field", istioMeshConfig, "failOpen: false", "failOpn: false", "failOpn"},
		{"fail open", istioMeshConfig, "failOpen: false", "failOpen: true", "failOpen"},
		{"a long timeout", istioMeshConfig, "timeout: 0.25s", "timeout: 10s", "timeout"},
		{"no body for the policies", istioMeshConfig, "maxRequestBytes: 8192", "maxRequestBytes: 0", "maxRequestBytes"},
		{"success on error", istioMeshConfig, `statusOnError: "403"`, `statusOnError: "200"`, "statusOnError"},
		{"guestgate across the network", istioMeshConfig, "service: guestgate.local", "service: guestgate.other.svc.cluster.local", "ServiceEntry"},
		{"misspelled policy field", "authorizationpolicy", "action: CUSTOM", "actoin: CUSTOM", "actoin"},
		{"allow instead of custom", "authorizationpolicy", "action: CUSTOM", "action: ALLOW", "CUSTOM"},
		{"only some paths checked", "authorizationpolicy", `ports: ["8080"]`, "ports: [\"8080\"]\n            paths: [\"/conversations/*\"]", "paths"},
		{"another port checked", "authorizationpolicy", `ports: ["8080"]`, `ports: ["9999"]`, "8080"},
		{"unknown provider", "authorizationpolicy", "name: guestgate\n  rules", "name: opa\n  rules", "provider"},
		{"entry beyond loopback", "serviceentry", "address: 127.0.0.1", "address: 10.0.0.9", "ServiceEntry"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := mustRender(t, istioOverlay)
			ms := string(meshSrc)
			if c.file == istioMeshConfig {
				ms = replaceOnce(t, ms, c.old, c.new)
			} else {
				editCustom(t, m, c.file, c.old, c.new)
			}
			mc, err := meshProviders([]byte(ms))
			if err == nil {
				err = checkIstio(m, mc)
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %v, want one naming %q", err, c.wantErr)
			}
		})
	}
}

// editCustom replaces text in the source file of a rendered mesh object
// and decodes the edited object in its place.
func editCustom(t *testing.T, m *manifests, file, old, new string) {
	t.Helper()
	src, err := os.ReadFile(istioOverlay + "/" + file + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	edited := replaceOnce(t, string(src), old, new)
	js, err := sigsyaml.YAMLToJSON([]byte(edited))
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range m.custom {
		if strings.EqualFold(o.Kind, file) {
			m.custom[i].JSON = js
			return
		}
	}
	t.Fatalf("no %s rendered", file)
}

// envoyGatewayDecoder knows Envoy Gateway's and the Gateway API's kinds.
var envoyGatewayDecoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{egv1a1.AddToScheme, gwapiv1.Install} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, s, s, kjson.SerializerOptions{Strict: true})
}()

// checkEnvoyGateway reports every way the route could reach the app
// without guestgate's yes.
func checkEnvoyGateway(m *manifests) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	var routes []*gwapiv1.HTTPRoute
	var policies []*egv1a1.SecurityPolicy
	for _, o := range m.custom {
		obj, _, err := envoyGatewayDecoder.Decode(o.JSON, nil, nil)
		if err != nil {
			fail("%s %s: %w", o.Kind, o.Name, err)
			continue
		}
		switch v := obj.(type) {
		case *gwapiv1.HTTPRoute:
			routes = append(routes, v)
		case *egv1a1.SecurityPolicy:
			policies = append(policies, v)
		default:
			fail("%s %s: decoded to %T, which no check here reads", o.Kind, o.Name, obj)
		}
	}
	ports := containerPorts(m.pod())
	serviceTarget := func(name string, port int32) int32 {
		for _, s := range m.services {
			for _, p := range s.Spec.Ports {
				if s.Name == name && p.Port == port {
					n, _ := resolvePort(p.TargetPort, ports)
					return n
				}
			}
		}
		return 0
	}
	for _, r := range routes {
		guarded := false
		for _, sp := range policies {
			for _, ref := range sp.Spec.TargetRefs {
				if ref.Kind == "HTTPRoute" && string(ref.Name) == r.Name && ref.Group == gwapiv1.GroupName {
					guarded = true
					if err := checkExtAuth(sp.Spec.ExtAuth, serviceTarget); err != nil {
						fail("SecurityPolicy %s: %w", sp.Name, err)
					}
				}
			}
		}
		if !guarded {
			fail("HTTPRoute %s: no SecurityPolicy with extAuth targets it", r.Name)
		}
		for _, rule := range r.Spec.Rules {
			for _, b := range rule.BackendRefs {
				if b.Port == nil || serviceTarget(string(b.Name), *b.Port) != appPort {
					fail("HTTPRoute %s: backend %s is not the app's port", r.Name, b.Name)
				}
			}
		}
	}
	if len(routes) == 0 {
		fail("no HTTPRoute")
	}
	// The check's port is open to the gateway's namespace only.
	for _, np := range m.netpols {
		for i, r := range np.Spec.Ingress {
			for _, p := range r.Ports {
				if n, _ := resolvePort(*p.Port, ports); n == guestgateGRPCPort && len(r.From) == 0 {
					fail("NetworkPolicy %s ingress[%d]: admits anyone to guestgate's check", np.Name, i)
				}
			}
		}
	}
	return errors.Join(errs...)
}

func checkExtAuth(a *egv1a1.ExtAuth, serviceTarget func(string, int32) int32) error {
	if a == nil || a.GRPC == nil {
		return errors.New("extAuth.grpc: want guestgate's gRPC check")
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if a.FailOpen == nil || *a.FailOpen {
		fail("extAuth.failOpen: want false, written out")
	}
	if a.Timeout == nil {
		fail("extAuth.timeout: want a bound of at most %v", maxCheckTimeout)
	} else if d, err := time.ParseDuration(string(*a.Timeout)); err != nil || d <= 0 || d > maxCheckTimeout {
		fail("extAuth.timeout %s: want more than 0 and at most %v", *a.Timeout, maxCheckTimeout)
	}
	if b := a.BodyToExtAuth; b == nil || b.MaxRequestBytes == 0 || b.MaxRequestBytes > maxBufferedAuthzBytes {
		fail("extAuth.bodyToExtAuth.maxRequestBytes: want 1..%d (policies read the body)", maxBufferedAuthzBytes)
	}
	refs := a.GRPC.BackendRefs
	if len(refs) != 1 || refs[0].Port == nil || serviceTarget(string(refs[0].Name), *refs[0].Port) != guestgateGRPCPort {
		fail("extAuth.grpc.backendRefs: want exactly a Service port leading to guestgate's %d", guestgateGRPCPort)
	}
	return errors.Join(errs...)
}

func TestEnvoyGatewayOverlayFailsClosed(t *testing.T) {
	m := mustRender(t, envoyGatewayOverlay)
	if m.container("envoy") != nil {
		t.Error("the base's Envoy is still in the pod: the gateway's Envoy takes its place")
	}
	if err := checkPodSafety(m, publicPorts{appPort, issuerPort, guestgateGRPCPort}); err != nil {
		t.Errorf("%s is unsafe:\n%v", envoyGatewayOverlay, err)
	}
	if err := checkEnvoyGateway(m); err != nil {
		t.Errorf("%s is unsafe:\n%v", envoyGatewayOverlay, err)
	}
}

func TestEnvoyGatewayCheckRejectsUnsafeObjects(t *testing.T) {
	for _, c := range []struct{ name, old, new, wantErr string }{
		{"misspelled field", "failOpen: false", "failOpn: false", "failOpn"},
		{"fail open", "failOpen: false", "failOpen: true", "failOpen"},
		{"no timeout", "    timeout: 250ms\n", "", "timeout"},
		{"another route", "      name: app\n  extAuth", "      name: other\n  extAuth", "no SecurityPolicy"},
		{"another backend", "port: 9191", "port: 80", "backendRefs"},
		{"no body", "maxRequestBytes: 8192", "maxRequestBytes: 0", "maxRequestBytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := mustRender(t, envoyGatewayOverlay)
			src, err := os.ReadFile(envoyGatewayOverlay + "/securitypolicy.yaml")
			if err != nil {
				t.Fatal(err)
			}
			js, err := sigsyaml.YAMLToJSON([]byte(replaceOnce(t, string(src), c.old, c.new)))
			if err != nil {
				t.Fatal(err)
			}
			for i, o := range m.custom {
				if o.Kind == "SecurityPolicy" {
					m.custom[i].JSON = js
				}
			}
			err = checkEnvoyGateway(m)
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %v, want one naming %q", err, c.wantErr)
			}
		})
	}
}
