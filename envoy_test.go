// Package guestgate_test checks the deployment files at the repository root. It holds
// tests only: envoy.yaml is loaded with Envoy's own API definitions (go-control-plane),
// every typed_config is resolved and validated as Envoy would, and the settings that keep
// the proxy failing closed are asserted, so a careless edit of envoy.yaml fails `go test`
// on a machine without an Envoy binary.
package guestgate_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"gopkg.in/yaml.v3"

	"github.com/guestgate/guestgate/config"

	// Registered for their typed_config types only: every "@type" envoy.yaml uses must
	// be registered here, or the loader refuses the file (as it should: an unchecked
	// typed_config is an unchecked part of the proxy).
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
)

const (
	envoyConfigFile = "envoy.yaml"

	// The guestgate gRPC ext_authz listener (DESIGN.md: listeners).
	guestgateClusterName = "guestgate"
	guestgateAddress     = "127.0.0.1"
	guestgatePort        = 9191

	// Bounds the safety check holds envoy.yaml to.
	maxCheckTimeout       = time.Second // ext_authz call: a stuck guestgate must deny quickly
	maxConnectTimeout     = time.Second // to guestgate, on loopback
	maxBufferedAuthzBytes = 64 << 10    // body bytes Envoy buffers per request for the check
	envoyDefaultHeadersKB = 60          // Envoy's max_request_headers_kb when unset

	// The protocol options key Envoy looks up in typed_extension_protocol_options.
	upstreamHTTPOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

func TestEnvoyConfigLoadsWithEnvoyTypesAndValidates(t *testing.T) {
	b := mustLoadEnvoyConfigFile(t)

	var resolved []string
	err := walkTypedConfigs(b, func(path string, m proto.Message) error {
		resolved = append(resolved, string(m.ProtoReflect().Descriptor().FullName()))
		return nil
	})
	if err != nil {
		t.Fatalf("walk typed configs: %v", err)
	}
	// HCM, ext_authz, router, the access log, the upstream HTTP/2 options at the least:
	// fewer means the walk missed some and the file's typed configs went unchecked.
	if len(resolved) < 5 {
		t.Fatalf("resolved %d typed_config values (%v), want at least 5", len(resolved), resolved)
	}
}

func TestEnvoyConfigFailsClosedAndNormalizesPaths(t *testing.T) {
	b := mustLoadEnvoyConfigFile(t)
	if err := checkEnvoySafety(b); err != nil {
		t.Fatalf("%s is unsafe:\n%v", envoyConfigFile, err)
	}
}

// The loader must refuse what Envoy would refuse, or the tests above prove nothing.
func TestEnvoyConfigLoaderRejectsBrokenConfig(t *testing.T) {
	src := readEnvoyConfigFile(t)
	tests := []struct {
		name     string
		old, new string
		wantErr  string
	}{
		{
			name:    "misspelled connection manager field",
			old:     "merge_slashes: true",
			new:     "merge_slashs: true",
			wantErr: "merge_slashs",
		},
		{
			name:    "misspelled ext_authz field inside a typed_config",
			old:     "failure_mode_allow: false\n",
			new:     "failure_mode_alow: false\n",
			wantErr: "failure_mode_alow",
		},
		{
			name:    "misspelled field in a cluster",
			old:     "connect_timeout: 0.25s",
			new:     "conect_timeout: 0.25s",
			wantErr: "conect_timeout",
		},
		{
			name:    "unknown typed_config type",
			old:     "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
			new:     "type.googleapis.com/envoy.extensions.filters.http.router.v3.Routr",
			wantErr: "Routr",
		},
		{
			name:    "enum value Envoy does not know",
			old:     "path_with_escaped_slashes_action: REJECT_REQUEST",
			new:     "path_with_escaped_slashes_action: REJECT",
			wantErr: "REJECT",
		},
		{
			name:    "malformed duration",
			old:     "  timeout: 0.25s\n",
			new:     "  timeout: 250ms\n",
			wantErr: "250ms",
		},
		{
			name:    "port out of range fails Envoy's field validation",
			old:     "port_value: 9191",
			new:     "port_value: 91910",
			wantErr: "PortValue",
		},
		{
			name:    "cluster without a name fails Envoy's field validation",
			old:     "- name: guestgate\n",
			new:     "- name: \"\"\n",
			wantErr: "Name",
		},
		{
			name:    "duplicate YAML key",
			old:     "merge_slashes: true",
			new:     "merge_slashes: true\n                merge_slashes: false",
			wantErr: "already defined",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			broken := replaceOnce(t, src, tt.old, tt.new)
			_, err := loadEnvoyConfig([]byte(broken))
			if err == nil {
				t.Fatalf("loader accepted the config with %q replaced by %q", tt.old, tt.new)
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

// Each unsafe edit loads fine (Envoy would run it) but must fail the safety check.
func TestEnvoySafetyCheckRejectsUnsafeConfig(t *testing.T) {
	src := readEnvoyConfigFile(t)
	tests := []struct {
		name     string
		old, new string
		wantErr  string
	}{
		{"fail open on a guestgate outage", "failure_mode_allow: false\n", "failure_mode_allow: true\n", "failure_mode_allow"},
		{"ext_authz calls another cluster", "cluster_name: guestgate\n                        # A short", "cluster_name: app\n                        # A short", "guestgate"},
		{"ext_authz without a timeout", "  timeout: 0.25s\n", "\n", "timeout"},
		{"ext_authz with a long timeout", "  timeout: 0.25s\n", "  timeout: 5s\n", "timeout"},
		{"ext_authz on the v2 API", "transport_api_version: V3", "transport_api_version: AUTO", "transport_api_version"},
		{"unbounded body buffer", "max_request_bytes: 8192", "max_request_bytes: 10485760", "max_request_bytes"},
		{"shadow mode enforces nothing", "failure_mode_allow: false\n", "failure_mode_allow: false\n                      shadow_mode: true\n", "shadow_mode"},
		{"ext_authz filter optional", "- name: envoy.filters.http.ext_authz\n", "- name: envoy.filters.http.ext_authz\n                    is_optional: true\n", "optional"},
		{"ext_authz filter disabled", "- name: envoy.filters.http.ext_authz\n", "- name: envoy.filters.http.ext_authz\n                    disabled: true\n", "disabled"},
		{"success status on error", "code: Forbidden", "code: OK", "status_on_error"},
		{"no path normalization", "normalize_path: true", "normalize_path: false", "normalize_path"},
		{"no slash merging", "merge_slashes: true", "merge_slashes: false", "merge_slashes"},
		{"headers past a gRPC message", "merge_slashes: true\n", "merge_slashes: true\n                max_request_headers_kb: 4096\n", "max_message_bytes"},
		{"escaped slashes passed through", "path_with_escaped_slashes_action: REJECT_REQUEST", "path_with_escaped_slashes_action: KEEP_UNCHANGED", "path_with_escaped_slashes_action"},
		{"client X-Forwarded-For trusted", "use_remote_address: true", "use_remote_address: false", "use_remote_address"},
		{"underscore headers allowed", "headers_with_underscores_action: REJECT_REQUEST", "headers_with_underscores_action: ALLOW", "headers_with_underscores_action"},
		{"guestgate on another port", "port_value: 9191", "port_value: 9192", "9191"},
		{"guestgate over HTTP/1", "http2_protocol_options: {}", "http_protocol_options: {}", "HTTP/2"},
		{"admin beyond loopback", "address: 127.0.0.1, port_value: 9901", "address: 0.0.0.0, port_value: 9901", "admin"},
		{
			"a route turns ext_authz off",
			"                            timeout: 30s\n",
			"                            timeout: 30s\n" +
				"                          typed_per_filter_config:\n" +
				"                            envoy.filters.http.ext_authz:\n" +
				"                              \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute\n" +
				"                              disabled: true\n",
			"disabled",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			edited := replaceOnce(t, src, tt.old, tt.new)
			b, err := loadEnvoyConfig([]byte(edited))
			if err != nil {
				t.Fatalf("the edited config should load (the check, not the loader, must catch it): %v", err)
			}
			err = checkEnvoySafety(b)
			if err == nil {
				t.Fatalf("safety check accepted the config with %q replaced by %q", tt.old, tt.new)
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("safety check error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

// Edits YAML text replacement cannot express simply, made on the loaded config.
func TestEnvoySafetyCheckRejectsUnsafeFilterChains(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(t *testing.T, hcm *hcmv3.HttpConnectionManager)
		wantErr string
	}{
		{
			name: "router before ext_authz",
			edit: func(t *testing.T, hcm *hcmv3.HttpConnectionManager) {
				f := hcm.GetHttpFilters()
				f[0], f[len(f)-1] = f[len(f)-1], f[0]
			},
			wantErr: "runs after the router",
		},
		{
			name: "ext_authz filter removed",
			edit: func(t *testing.T, hcm *hcmv3.HttpConnectionManager) {
				hcm.HttpFilters = hcm.GetHttpFilters()[1:]
			},
			wantErr: "no ext_authz",
		},
		{
			name: "body not sent to guestgate",
			edit: func(t *testing.T, hcm *hcmv3.HttpConnectionManager) {
				f := hcm.GetHttpFilters()[0]
				a := new(extauthzv3.ExtAuthz)
				if err := f.GetTypedConfig().UnmarshalTo(a); err != nil {
					t.Fatalf("unpack ext_authz: %v", err)
				}
				a.WithRequestBody = nil
				if err := anypb.MarshalFrom(f.GetTypedConfig(), a, proto.MarshalOptions{}); err != nil {
					t.Fatalf("repack ext_authz: %v", err)
				}
			},
			wantErr: "with_request_body",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustLoadEnvoyConfigFile(t)
			hcmAny := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig()
			hcm := new(hcmv3.HttpConnectionManager)
			if err := hcmAny.UnmarshalTo(hcm); err != nil {
				t.Fatalf("unpack connection manager: %v", err)
			}
			tt.edit(t, hcm)
			if err := anypb.MarshalFrom(hcmAny, hcm, proto.MarshalOptions{}); err != nil {
				t.Fatalf("repack connection manager: %v", err)
			}
			err := checkEnvoySafety(b)
			if err == nil {
				t.Fatal("safety check accepted the edited config")
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("safety check error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

// loadEnvoyConfig parses an Envoy v3 bootstrap as strictly as Envoy does: YAML to JSON,
// protojson with unknown fields refused, every typed_config resolved to a registered type,
// and protoc-gen-validate rules checked on the bootstrap and on every typed_config.
func loadEnvoyConfig(src []byte) (*bootstrapv3.Bootstrap, error) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("parse YAML: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("parse YAML: want exactly one document")
	}
	doc, err := jsonValue(doc)
	if err != nil {
		return nil, fmt.Errorf("parse YAML: %w", err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("convert YAML to JSON: %w", err)
	}

	b := new(bootstrapv3.Bootstrap)
	// protojson resolves each "@type" through the global registry: a type no package
	// here registered fails now, as an unknown field does.
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, b); err != nil {
		return nil, fmt.Errorf("decode bootstrap: %w", err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("validate bootstrap: %w", err)
	}
	// Validation stops at each Any: validate what every one holds.
	err = walkTypedConfigs(b, func(path string, m proto.Message) error {
		v, ok := m.(interface{ ValidateAll() error })
		if !ok {
			return fmt.Errorf("%s: %s has no validation rules to check", path, m.ProtoReflect().Descriptor().FullName())
		}
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("validate %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// jsonValue makes a decoded YAML value encodable as JSON: yaml.v3 gives map[string]any
// for string-keyed mappings but map[any]any for any other, which encoding/json refuses.
func jsonValue(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("mapping key %v is a %T, not a string", k, k)
			}
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[ks] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	default:
		return v, nil
	}
}

// walkTypedConfigs finds every google.protobuf.Any in m, however deep (including Anys
// inside resolved Anys), resolves it with anypb.UnmarshalNew and calls visit with its
// field path and the resolved message. An Any that cannot be resolved is an error.
func walkTypedConfigs(m proto.Message, visit func(path string, m proto.Message) error) error {
	return walkMessage(m.ProtoReflect(), string(m.ProtoReflect().Descriptor().Name()), visit)
}

func walkMessage(m protoreflect.Message, path string, visit func(string, proto.Message) error) error {
	if m.Descriptor().FullName() == "google.protobuf.Any" {
		a, ok := m.Interface().(*anypb.Any)
		if !ok {
			return fmt.Errorf("%s: Any of unexpected Go type %T", path, m.Interface())
		}
		inner, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{})
		if err != nil {
			return fmt.Errorf("%s: cannot resolve typed_config %q (register its Go package in envoy_test.go): %w", path, a.GetTypeUrl(), err)
		}
		switch name := inner.ProtoReflect().Descriptor().FullName(); name {
		case "xds.type.v3.TypedStruct", "udpa.type.v1.TypedStruct":
			// A TypedStruct carries its config as an untyped Struct: nothing here could
			// check it, so it is refused rather than passed unchecked.
			return fmt.Errorf("%s: %s cannot be checked; write the typed config instead", path, name)
		}
		if err := visit(path, inner); err != nil {
			return err
		}
		return walkMessage(inner.ProtoReflect(), path+"<"+string(inner.ProtoReflect().Descriptor().Name())+">", visit)
	}

	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsList():
			if !isMessage(fd) {
				return true
			}
			l := v.List()
			for i := range l.Len() {
				if err = walkMessage(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), visit); err != nil {
					return false
				}
			}
		case fd.IsMap():
			if !isMessage(fd.MapValue()) {
				return true
			}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				err = walkMessage(mv.Message(), fmt.Sprintf("%s[%q]", p, k.String()), visit)
				return err == nil
			})
		case isMessage(fd):
			err = walkMessage(v.Message(), p, visit)
		}
		return err == nil
	})
	return err
}

func isMessage(fd protoreflect.FieldDescriptor) bool {
	return fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind
}

// checkEnvoySafety reports every way b could let a request reach the upstream without
// guestgate's yes, or let guestgate and the upstream disagree about the request.
func checkEnvoySafety(b *bootstrapv3.Bootstrap) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if addr := b.GetAdmin().GetAddress().GetSocketAddress(); addr != nil && !isLoopback(addr.GetAddress()) {
		fail("admin: bound to %q; the unauthenticated admin interface must stay on loopback", addr.GetAddress())
	}

	listeners := b.GetStaticResources().GetListeners()
	if len(listeners) == 0 {
		fail("no listener")
	}
	var authzClusters []string
	for _, l := range listeners {
		if len(l.GetFilterChains()) == 0 || l.GetDefaultFilterChain() != nil {
			fail("listener %q: want explicit filter chains and no default chain", l.GetName())
		}
		for i, fc := range l.GetFilterChains() {
			filters := fc.GetFilters()
			// Only an HTTP connection manager runs ext_authz: a tcp_proxy or any other
			// terminal filter would carry traffic past guestgate.
			if len(filters) != 1 {
				fail("listener %q chain %d: want exactly the HTTP connection manager, have %d network filters", l.GetName(), i, len(filters))
				continue
			}
			hcm := new(hcmv3.HttpConnectionManager)
			if err := filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
				fail("listener %q chain %d: network filter is not the HTTP connection manager: %v", l.GetName(), i, err)
				continue
			}
			cluster, err := checkConnectionManager(hcm)
			if err != nil {
				fail("listener %q chain %d: %w", l.GetName(), i, err)
			}
			if cluster != "" {
				authzClusters = append(authzClusters, cluster)
			}
		}
	}

	// No route or virtual host may switch ext_authz off or point it elsewhere.
	err := walkTypedConfigs(b, func(path string, m proto.Message) error {
		pr, ok := m.(*extauthzv3.ExtAuthzPerRoute)
		if !ok {
			return nil
		}
		if pr.GetDisabled() {
			fail("%s: ext_authz disabled for a route", path)
		}
		if cs := pr.GetCheckSettings(); cs.GetGrpcService() != nil || cs.GetHttpService() != nil || cs.GetDisableRequestBodyBuffering() {
			fail("%s: a route overrides ext_authz's service or body buffering", path)
		}
		return nil
	})
	if err != nil {
		fail("%w", err)
	}

	for _, name := range authzClusters {
		if err := checkGuestgateCluster(b, name); err != nil {
			fail("cluster %q: %w", name, err)
		}
	}
	return errors.Join(errs...)
}

// checkConnectionManager checks the connection manager's normalization settings and its
// filter chain, and returns the cluster ext_authz calls.
func checkConnectionManager(hcm *hcmv3.HttpConnectionManager) (string, error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if !hcm.GetNormalizePath().GetValue() {
		fail("normalize_path: want true (guestgate and the app must see one path)")
	}
	if !hcm.GetMergeSlashes() {
		fail("merge_slashes: want true")
	}
	if a := hcm.GetPathWithEscapedSlashesAction(); a != hcmv3.HttpConnectionManager_REJECT_REQUEST {
		fail("path_with_escaped_slashes_action: %v, want REJECT_REQUEST", a)
	}
	if !hcm.GetUseRemoteAddress().GetValue() {
		fail("use_remote_address: want true (the edge must not trust client X-Forwarded-For)")
	}
	if a := hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction(); a != corev3.HttpProtocolOptions_REJECT_REQUEST {
		fail("common_http_protocol_options.headers_with_underscores_action: %v, want REJECT_REQUEST (x_guestgate_* smuggling)", a)
	}
	if !hcm.GetStripAnyHostPort() {
		fail("strip_any_host_port: want true")
	}

	authzAt, routerAt := -1, -1
	var authz *extauthzv3.ExtAuthz
	filters := hcm.GetHttpFilters()
	for i, f := range filters {
		// Envoy picks the extension by the typed_config's type, not by the name.
		switch m, err := anypb.UnmarshalNew(f.GetTypedConfig(), proto.UnmarshalOptions{}); {
		case err != nil:
			fail("http filter %q: %v", f.GetName(), err)
		case isType[*extauthzv3.ExtAuthz](m):
			if authz != nil {
				fail("http filter %q: a second ext_authz filter", f.GetName())
				continue
			}
			authz, authzAt = m.(*extauthzv3.ExtAuthz), i
			if f.GetIsOptional() || f.GetDisabled() {
				fail("http filter %q: ext_authz must be neither optional nor disabled", f.GetName())
			}
		case isType[*routerv3.Router](m):
			routerAt = i
		}
	}
	switch {
	case authz == nil:
		fail("no ext_authz http filter")
	case routerAt == -1:
		fail("no router http filter")
	case authzAt > routerAt:
		fail("http filters: ext_authz at %d runs after the router at %d", authzAt, routerAt)
	}
	if routerAt != -1 && routerAt != len(filters)-1 {
		fail("http filters: the router must be the last filter")
	}
	if authz == nil {
		return "", errors.Join(errs...)
	}
	if err := checkExtAuthz(authz); err != nil {
		fail("ext_authz: %w", err)
	}
	// Every request Envoy lets through to the check must fit in one of
	// guestgate's gRPC messages, or it is a RESOURCE_EXHAUSTED error rather
	// than a CheckResponse: its headers, its path again, the buffered body
	// and the attributes (config.Listen.MaxMessageBytes).
	headers := int(hcm.GetMaxRequestHeadersKb().GetValue())
	if headers == 0 {
		headers = envoyDefaultHeadersKB
	}
	if need := 2*headers<<10 + int(authz.GetWithRequestBody().GetMaxRequestBytes()) + 128<<10; need > config.DefaultMaxMessageBytes {
		fail("max_request_headers_kb %d and with_request_body.max_request_bytes make a CheckRequest of up to %d bytes, over guestgate's listen.max_message_bytes default %d", headers, need, config.DefaultMaxMessageBytes)
	}
	return authz.GetGrpcService().GetEnvoyGrpc().GetClusterName(), errors.Join(errs...)
}

func checkExtAuthz(a *extauthzv3.ExtAuthz) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	g := a.GetGrpcService()
	if g == nil {
		fail("want grpc_service (guestgate's gRPC server)")
	}
	if c := g.GetEnvoyGrpc().GetClusterName(); c != guestgateClusterName {
		fail("grpc_service.envoy_grpc.cluster_name: %q, want %q", c, guestgateClusterName)
	}
	if err := checkDuration("grpc_service.timeout", g.GetTimeout(), maxCheckTimeout); err != nil {
		fail("%w", err)
	}
	if v := a.GetTransportApiVersion(); v != corev3.ApiVersion_V3 {
		fail("transport_api_version: %v, want V3", v)
	}
	if a.GetFailureModeAllow() {
		fail("failure_mode_allow: true lets every request through while guestgate is down; want false")
	}
	if a.GetShadowMode() {
		fail("shadow_mode: true enforces no decision; want false")
	}
	if a.GetFilterEnabled() != nil || a.GetFilterEnabledMetadata() != nil {
		fail("filter_enabled: must not be set (runtime or metadata could turn the check off)")
	}
	if s := a.GetStatusOnError(); s != nil && s.GetCode() < 400 {
		fail("status_on_error: %v; an error must answer with a 4xx or 5xx", s.GetCode())
	}
	switch body := a.GetWithRequestBody(); {
	case body == nil:
		fail("with_request_body: want it set (policies read the JSON body)")
	case body.GetMaxRequestBytes() == 0 || body.GetMaxRequestBytes() > maxBufferedAuthzBytes:
		fail("with_request_body.max_request_bytes: %d, want 1..%d", body.GetMaxRequestBytes(), maxBufferedAuthzBytes)
	}
	return errors.Join(errs...)
}

// checkGuestgateCluster checks that the cluster ext_authz calls is guestgate's gRPC
// listener, reached over HTTP/2 with a short connect timeout.
func checkGuestgateCluster(b *bootstrapv3.Bootstrap, name string) error {
	var c *clusterv3.Cluster
	for _, cl := range b.GetStaticResources().GetClusters() {
		if cl.GetName() == name {
			c = cl
		}
	}
	if c == nil {
		return errors.New("not defined")
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if err := checkDuration("connect_timeout", c.GetConnectTimeout(), maxConnectTimeout); err != nil {
		fail("%w", err)
	}
	var addrs []string
	for _, le := range c.GetLoadAssignment().GetEndpoints() {
		for _, ep := range le.GetLbEndpoints() {
			sa := ep.GetEndpoint().GetAddress().GetSocketAddress()
			addrs = append(addrs, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
		}
	}
	if want := fmt.Sprintf("%s:%d", guestgateAddress, guestgatePort); len(addrs) != 1 || addrs[0] != want {
		fail("endpoints %v, want exactly %s", addrs, want)
	}
	opts := new(upstreamhttpv3.HttpProtocolOptions)
	if a := c.GetTypedExtensionProtocolOptions()[upstreamHTTPOptionsKey]; a == nil {
		fail("no %s: gRPC needs HTTP/2", upstreamHTTPOptionsKey)
	} else if err := a.UnmarshalTo(opts); err != nil {
		fail("%s: %v", upstreamHTTPOptionsKey, err)
	} else if opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		fail("%s: want explicit_http_config.http2_protocol_options (gRPC needs HTTP/2)", upstreamHTTPOptionsKey)
	}
	return errors.Join(errs...)
}

func checkDuration(field string, d *durationpb.Duration, limit time.Duration) error {
	if d == nil {
		return fmt.Errorf("%s: not set; want a bound of at most %v", field, limit)
	}
	if err := d.CheckValid(); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if v := d.AsDuration(); v <= 0 || v > limit {
		return fmt.Errorf("%s: %v, want more than 0 and at most %v", field, v, limit)
	}
	return nil
}

func isLoopback(host string) bool {
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func isType[T proto.Message](m proto.Message) bool {
	_, ok := m.(T)
	return ok
}

func readEnvoyConfigFile(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(envoyConfigFile)
	if err != nil {
		t.Fatalf("read %s: %v", envoyConfigFile, err)
	}
	return string(src)
}

func mustLoadEnvoyConfigFile(t *testing.T) *bootstrapv3.Bootstrap {
	t.Helper()
	b, err := loadEnvoyConfig([]byte(readEnvoyConfigFile(t)))
	if err != nil {
		t.Fatalf("load %s: %v", envoyConfigFile, err)
	}
	return b
}

// replaceOnce edits src, failing the test unless old occurs exactly once, so a negative
// test cannot silently test the unedited file after envoy.yaml changes.
func replaceOnce(t *testing.T, src, old, new string) string {
	t.Helper()
	if n := strings.Count(src, old); n != 1 {
		t.Fatalf("%q occurs %d times in %s, want once; update the test", old, n, envoyConfigFile)
	}
	return strings.Replace(src, old, new, 1)
}
