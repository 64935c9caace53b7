package guestgate_test

// deploy/kubernetes, checked as envoy_test.go checks envoy.yaml: rendered
// with kustomize's own Go API (krusty, what `kubectl apply -k` runs), every
// object decoded strictly (an unknown or duplicate field fails) into
// Kubernetes' own types, and the settings that keep the pod failing closed
// asserted, each assertion shown to bite by a broken copy.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

const (
	kubernetesBase = "deploy/kubernetes/base"
	// What the base's names and paths are (deployment.yaml).
	podName         = "app"
	guestgateName   = "guestgate"
	guestgateConfig = "/etc/guestgate/config/guestgate.yaml"
	envoyPort       = 10000
)

// manifests are the objects one kustomization renders, decoded.
type manifests struct {
	deployments  []*appsv1.Deployment
	services     []*corev1.Service
	configMaps   map[string]*corev1.ConfigMap
	pvcs         []*corev1.PersistentVolumeClaim
	pdbs         []*policyv1.PodDisruptionBudget
	netpols      []*networkingv1.NetworkPolicy
	hpas         []*autoscalingv2.HorizontalPodAutoscaler
	custom       []customObject // kinds of other projects (meshes.go checks them)
	kinds        []string
	renderedJSON map[string][]byte // by kind/name
}

// customObject is an object of a kind Kubernetes itself does not define.
type customObject struct {
	APIVersion, Kind, Name string
	JSON                   []byte
}

// kubeScheme knows the kinds the manifests may hold; the strict serializer
// refuses unknown and duplicate fields.
var kubeDecoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{appsv1.AddToScheme, autoscalingv2.AddToScheme, corev1.AddToScheme, policyv1.AddToScheme, networkingv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, s, s, kjson.SerializerOptions{Strict: true})
}()

// renderKustomization runs kustomize on dir as `kubectl apply -k dir` would.
func renderKustomization(dir string) (*manifests, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	m := &manifests{configMaps: map[string]*corev1.ConfigMap{}, renderedJSON: map[string][]byte{}}
	for _, r := range rm.Resources() {
		js, err := r.MarshalJSON()
		if err != nil {
			return nil, err
		}
		id := r.GetKind() + "/" + r.GetName()
		m.kinds = append(m.kinds, id)
		m.renderedJSON[id] = js
		if err := m.add(r.GetApiVersion(), r.GetKind(), r.GetName(), js); err != nil {
			return nil, fmt.Errorf("%s %s: %w", dir, id, err)
		}
	}
	return m, nil
}

func (m *manifests) add(apiVersion, kind, name string, js []byte) error {
	if !kubernetesKinds[kind] {
		m.custom = append(m.custom, customObject{APIVersion: apiVersion, Kind: kind, Name: name, JSON: js})
		return nil
	}
	obj, _, err := kubeDecoder.Decode(js, nil, nil)
	if err != nil {
		return err
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		m.deployments = append(m.deployments, o)
	case *corev1.Service:
		m.services = append(m.services, o)
	case *corev1.ConfigMap:
		m.configMaps[o.Name] = o
	case *corev1.PersistentVolumeClaim:
		m.pvcs = append(m.pvcs, o)
	case *policyv1.PodDisruptionBudget:
		m.pdbs = append(m.pdbs, o)
	case *networkingv1.NetworkPolicy:
		m.netpols = append(m.netpols, o)
	case *autoscalingv2.HorizontalPodAutoscaler:
		m.hpas = append(m.hpas, o)
	default:
		return fmt.Errorf("decoded to %T, which no check here reads", obj)
	}
	return nil
}

var kubernetesKinds = map[string]bool{
	"Deployment": true, "Service": true, "ConfigMap": true, "PersistentVolumeClaim": true,
	"PodDisruptionBudget": true, "NetworkPolicy": true, "HorizontalPodAutoscaler": true,
}

func mustRender(t *testing.T, dir string) *manifests {
	t.Helper()
	m, err := renderKustomization(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestKubernetesBaseRendersAndDecodesStrictly(t *testing.T) {
	m := mustRender(t, kubernetesBase)
	want := []string{"ConfigMap/envoy-config", "ConfigMap/guestgate-config", "ConfigMap/guestgate-policies", "Deployment/app",
		"NetworkPolicy/app", "PodDisruptionBudget/app", "Service/app"}
	got := slices.Sorted(slices.Values(m.kinds))
	if !slices.Equal(got, want) {
		t.Fatalf("rendered %v, want %v", got, want)
	}
	if len(m.custom) != 0 {
		t.Fatalf("objects of other projects in the base: %v", m.custom)
	}
}

// The decoder must refuse what the API server would, or the checks below
// read a different object than the cluster would run.
func TestKubernetesDecoderRefusesWhatTheAPIServerWould(t *testing.T) {
	m := mustRender(t, kubernetesBase)
	dep := string(m.renderedJSON["Deployment/app"])
	for _, c := range []struct{ name, old, new, wantErr string }{
		{"misspelled field", `"readOnlyRootFilesystem":true`, `"readOnlyRootFileSystem":true`, "readOnlyRootFileSystem"},
		{"duplicate field", `"replicas":2`, `"replicas":2,"replicas":3`, "replicas"},
		{"wrong type", `"replicas":2`, `"replicas":"2"`, "replicas"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if strings.Count(dep, c.old) < 1 {
				t.Fatalf("%q is not in the rendered Deployment: update the test", c.old)
			}
			err := (&manifests{configMaps: map[string]*corev1.ConfigMap{}}).add("apps/v1", "Deployment", "app", []byte(strings.Replace(dep, c.old, c.new, 1)))
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %v, want one naming %q", err, c.wantErr)
			}
		})
	}
}

func TestKubernetesBaseFailsClosed(t *testing.T) {
	m := mustRender(t, kubernetesBase)
	if err := checkKubernetesSafety(m); err != nil {
		t.Fatalf("%s is unsafe:\n%v", kubernetesBase, err)
	}
}

// Each edit renders a manifest the cluster would run; the check must
// refuse every one.
func TestKubernetesSafetyCheckRejectsUnsafeManifests(t *testing.T) {
	for _, c := range []struct {
		name    string
		edit    func(m *manifests)
		wantErr string
	}{
		{"root allowed", func(m *manifests) { m.pod().SecurityContext.RunAsNonRoot = nil }, "runAsNonRoot"},
		{"privilege escalation", func(m *manifests) { m.container(guestgateName).SecurityContext.AllowPrivilegeEscalation = ptr(true) }, "allowPrivilegeEscalation"},
		{"writable root filesystem", func(m *manifests) { m.container("envoy").SecurityContext.ReadOnlyRootFilesystem = ptr(false) }, "readOnlyRootFilesystem"},
		{"capabilities kept", func(m *manifests) { m.container("app").SecurityContext.Capabilities.Drop = nil }, "capabilities"},
		{"a capability added", func(m *manifests) {
			m.container(guestgateName).SecurityContext.Capabilities.Add = []corev1.Capability{"NET_BIND_SERVICE"}
		}, "capabilities"},
		{"privileged", func(m *manifests) { m.container("envoy").SecurityContext.Privileged = ptr(true) }, "privileged"},
		{"no seccomp profile", func(m *manifests) { m.pod().SecurityContext.SeccompProfile = nil }, "seccomp"},
		{"service account token mounted", func(m *manifests) { m.pod().AutomountServiceAccountToken = ptr(true) }, "automountServiceAccountToken"},
		{"no memory limit for guestgate", func(m *manifests) { delete(m.container(guestgateName).Resources.Limits, corev1.ResourceMemory) }, "memory limit"},
		{"GOMEMLIMIT overrides the cgroup limit", func(m *manifests) {
			c := m.container(guestgateName)
			c.Env = append(c.Env, corev1.EnvVar{Name: "GOMEMLIMIT", Value: "1GiB"})
		}, "GOMEMLIMIT"},
		{"no readiness probe", func(m *manifests) { m.container(guestgateName).ReadinessProbe = nil }, "/readyz"},
		{"liveness not on gRPC health", func(m *manifests) {
			m.container(guestgateName).LivenessProbe.ProbeHandler = corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{}}
		}, "gRPC health"},
		{"config by subPath (never reloaded)", func(m *manifests) { m.container(guestgateName).VolumeMounts[0].SubPath = "guestgate.yaml" }, "subPath"},
		{"secret mount writable", func(m *manifests) { m.container(guestgateName).VolumeMounts[2].ReadOnly = false }, "readOnly"},
		{"image floating", func(m *manifests) { m.container("envoy").Image = "docker.io/envoyproxy/envoy:latest" }, "tag"},
		{"guestgate without --config", func(m *manifests) { m.container(guestgateName).Args = []string{"serve"} }, "--config"},
		{"service exposes the app port", func(m *manifests) {
			m.services[0].Spec.Ports[0].TargetPort.StrVal = "app"
		}, "Service"},
		{"network policy admits the check port", func(m *manifests) {
			m.netpols[0].Spec.Ingress[0].Ports = append(m.netpols[0].Spec.Ingress[0].Ports, networkingv1.NetworkPolicyPort{Port: intOrStr(9191)})
		}, "9191"},
		{"network policy admits every port", func(m *manifests) { m.netpols[0].Spec.Ingress[0].Ports = nil }, "every port"},
		{"no network policy", func(m *manifests) { m.netpols = nil }, "NetworkPolicy"},
		{"budget selects other pods", func(m *manifests) {
			m.pdbs[0].Spec.Selector.MatchLabels = map[string]string{"app.kubernetes.io/name": "other"}
		}, "PodDisruptionBudget"},
		{"budget allows no disruption to run", func(m *manifests) { m.pdbs = nil }, "PodDisruptionBudget"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := mustRender(t, kubernetesBase)
			c.edit(m)
			err := checkKubernetesSafety(m)
			if err == nil {
				t.Fatal("the safety check accepted the edited manifests")
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %q does not mention %q", err, c.wantErr)
			}
		})
	}
}

// TestKubernetesPoliciesConfigMapHoldsEveryPolicyFile: a policy file added
// to policies/ without its line in policies/Kustomization and its item in
// the Deployment would silently not be deployed.
func TestKubernetesPoliciesConfigMapHoldsEveryPolicyFile(t *testing.T) {
	m := mustRender(t, kubernetesBase)
	var want []string
	err := filepath.WalkDir("policies", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel("policies", p)
		switch ext := filepath.Ext(p); {
		case ext == ".rego" && !strings.HasSuffix(p, "_test.rego"), ext == ".json", ext == ".yaml", ext == ".yml":
			want = append(want, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cm := m.configMaps["guestgate-policies"]
	var got []string
	for _, v := range m.pod().Volumes {
		if v.ConfigMap == nil || v.ConfigMap.Name != "guestgate-policies" {
			continue
		}
		for _, it := range v.ConfigMap.Items {
			got = append(got, it.Path)
			if b, err := os.ReadFile(filepath.Join("policies", it.Path)); err != nil || cm.Data[it.Key] != string(b) {
				t.Errorf("key %s mounted at %s is not policies/%s (%v)", it.Key, it.Path, it.Path, err)
			}
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("the pod mounts %v of policies/, which holds %v: add the file to policies/Kustomization and deployment.yaml's items", got, want)
	}
}

// The pod's envoy.yaml is envoy.yaml with the listener on the pod's
// address, and held to the same checks.
func TestKubernetesEnvoyConfigIsTheCheckedOne(t *testing.T) {
	m := mustRender(t, kubernetesBase)
	src := m.configMaps["envoy-config"].Data["envoy.yaml"]
	b, err := loadEnvoyConfig([]byte(src))
	if err != nil {
		t.Fatalf("the pod's envoy.yaml: %v", err)
	}
	if err := checkEnvoySafety(b); err != nil {
		t.Fatalf("the pod's envoy.yaml is unsafe:\n%v", err)
	}
	root := readEnvoyConfigFile(t)
	_, body, ok := strings.Cut(src, "#\n# Envoy in front of")
	if !ok {
		t.Fatal("the pod's envoy.yaml lost its header: update the test")
	}
	podListener := "socket_address: { address: 0.0.0.0, port_value: 10000 }"
	rootListener := "socket_address: { address: 127.0.0.1, port_value: 10000 }"
	if got := strings.Replace("# Envoy in front of"+body, podListener, rootListener, 1); got != root {
		t.Error("deploy/kubernetes/base/envoy.yaml differs from envoy.yaml in more than its listener address: make the same change in both")
	}
}

// layOutPod writes what container sees of the pod's ConfigMap and Secret
// volumes under root and returns where guestgate's config is. A Secret's
// values are made up: a .pem a new key, a .b64 a guest secret, anything
// else a client secret.
func layOutPod(t *testing.T, m *manifests, root, container string) string {
	t.Helper()
	pod := m.pod()
	c := m.container(container)
	for _, vm := range c.VolumeMounts {
		var v *corev1.Volume
		for i := range pod.Volumes {
			if pod.Volumes[i].Name == vm.Name {
				v = &pod.Volumes[i]
			}
		}
		if v == nil {
			t.Fatalf("mount %s names no volume", vm.Name)
		}
		dir := filepath.Join(root, vm.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		write := func(path string, b []byte) {
			p := filepath.Join(dir, path)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		switch {
		case v.ConfigMap != nil:
			cm := m.configMaps[v.ConfigMap.Name]
			if cm == nil {
				t.Fatalf("volume %s: no ConfigMap %s in the manifests", v.Name, v.ConfigMap.Name)
			}
			items := v.ConfigMap.Items
			if len(items) == 0 {
				for k := range cm.Data {
					items = append(items, corev1.KeyToPath{Key: k, Path: k})
				}
			}
			for _, it := range items {
				data, ok := cm.Data[it.Key]
				if !ok {
					t.Fatalf("volume %s: ConfigMap %s has no key %s: the pod would not start", v.Name, cm.Name, it.Key)
				}
				doc := strings.ReplaceAll(data, "/etc/guestgate/", filepath.Join(root, "etc/guestgate")+"/")
				write(it.Path, []byte(doc))
			}
		case v.Secret != nil:
			if len(v.Secret.Items) == 0 {
				t.Fatalf("volume %s: list the Secret's keys in items, so a missing one stops the pod", v.Name)
			}
			for _, it := range v.Secret.Items {
				write(it.Path, madeUpSecret(t, it.Path))
			}
		case v.PersistentVolumeClaim != nil || v.EmptyDir != nil:
		default:
			t.Fatalf("volume %s: a kind this test does not lay out", v.Name)
		}
	}
	return filepath.Join(root, guestgateConfig)
}

func madeUpSecret(t *testing.T, name string) []byte {
	t.Helper()
	switch filepath.Ext(name) {
	case ".pem":
		return []byte("-----BEGIN PRIVATE KEY-----\nnot read by config.Load\n-----END PRIVATE KEY-----\n")
	case ".b64":
		return []byte("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0=")
	}
	return bytes.Repeat([]byte("s"), 40)
}

// pod is the base's one Deployment's pod template (the checks' subject).
func (m *manifests) pod() *corev1.PodSpec {
	for _, d := range m.deployments {
		if d.Name == podName {
			return &d.Spec.Template.Spec
		}
	}
	return nil
}

func (m *manifests) container(name string) *corev1.Container {
	p := m.pod()
	if p == nil {
		return nil
	}
	for i := range p.Containers {
		if p.Containers[i].Name == name {
			return &p.Containers[i]
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

var errNoPod = errors.New("no Deployment " + podName)
