package ext_authz

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
)

// collectorTLS is how a test collector speaks: plaintext, TLS, or TLS
// asking for a client certificate.
type collectorTLS int

const (
	plaintext collectorTLS = iota
	serverTLS
	mutualTLS
)

// startCollector runs a collector on 127.0.0.1:0 for protocol and returns
// it with the tracing config that sends to it.
func startCollector(tb testing.TB, protocol string, mode collectorTLS, urlPath string) (*testsupport.Collector, config.Tracing) {
	tb.Helper()
	cfg := config.Tracing{Enabled: true, Protocol: protocol, URLPath: urlPath, ServiceName: "guestgate-under-test", Insecure: mode == plaintext}
	var tlsCfg *tls.Config
	if mode != plaintext {
		dir := tb.TempDir()
		cert, certPEM, keyPEM := selfSignedCert(tb)
		cfg.CAFile = writeFile(tb, dir, "ca.pem", certPEM)
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if mode == mutualTLS {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(certPEM)
			tlsCfg.ClientCAs, tlsCfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
			cfg.CertFile, cfg.KeyFile = writeFile(tb, dir, "client.pem", certPEM), writeFile(tb, dir, "client-key.pem", keyPEM)
		}
	}
	var c *testsupport.Collector
	switch protocol {
	case config.TracingGRPC:
		var opts []grpc.ServerOption
		if tlsCfg != nil {
			opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
		}
		c, cfg.Endpoint = testsupport.StartGRPCCollector(tb, opts...)
	case config.TracingHTTP:
		c = &testsupport.Collector{URLPath: urlPath}
		if c.URLPath == "" {
			c.URLPath = config.DefaultTracingURLPath
		}
		srv := httptest.NewUnstartedServer(c)
		if tlsCfg != nil {
			srv.TLS = tlsCfg
			srv.StartTLS()
		} else {
			srv.Start()
		}
		tb.Cleanup(srv.Close)
		cfg.Endpoint = srv.Listener.Addr().String()
	}
	// The config's own defaults (the sample ratio) and validation.
	doc, err := json.Marshal(map[string]any{"tracing": map[string]any{
		"enabled": true, "protocol": cfg.Protocol, "endpoint": cfg.Endpoint, "url_path": cfg.URLPath, "insecure": cfg.Insecure,
		"ca_file": cfg.CAFile, "cert_file": cfg.CertFile, "key_file": cfg.KeyFile, "service_name": cfg.ServiceName,
	}})
	if err != nil {
		tb.Fatal(err)
	}
	full, err := config.Parse(doc, tb.TempDir()) // JSON is YAML
	if err != nil {
		tb.Fatal(err)
	}
	return c, full.Tracing
}

// selfSignedCert is a certificate for 127.0.0.1 that is its own CA, good
// for a server and a client. Its validity spans the years around any test
// run, so no clock is read.
func selfSignedCert(t testing.TB) (tls.Certificate, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "collector.test"},
		NotBefore: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert, certPEM, keyPEM
}

func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tracedChecker is the shipped policy's checker (bench_test.go) built again
// with the tracer provider cfg describes, and the HTTP check in form.
func tracedChecker(t testing.TB, cfg config.Tracing, form string) (*Checker, *testsupport.Development, func()) {
	t.Helper()
	tp, err := NewTracerProvider(context.Background(), cfg, "test-version")
	if err != nil || tp == nil {
		t.Fatalf("NewTracerProvider: %v (nil: %t)", err, tp == nil)
	}
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	base, ws := shippedChecker(t, 0, 0)
	cs := base.compiled.Load()
	httpCheck := config.HTTPCheck{Form: form, PathPrefix: config.DefaultHTTPCheckPrefix}
	c := New(Settings{Verifier: cs.verifier, Check: cs.check, HTTPCheck: httpCheck},
		Options{Logger: slog.New(slog.DiscardHandler), Tracing: tp})
	c.SetEngine(base.engine.Load())
	flush := func() {
		t.Helper()
		// A bound for a broken exporter, not a wait: ForceFlush returns
		// once every ended span is exported.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := tp.ForceFlush(ctx); err != nil {
			t.Fatalf("ForceFlush: %v", err)
		}
	}
	return c, ws, flush
}

// The trace context a test request comes with.
const (
	testTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	testParentID    = "00f067aa0ba902b7"
	testTraceparent = "00-" + testTraceID + "-" + testParentID + "-01"
	testTracestate  = "vendor=tracestate-secret-4f2a"
	testRequestID   = "7d0c5b1e-2f4a-4b3c-8d9e-0a1b2c3d4e5f"
)

// sensitiveRequest is an allowed Kite command carrying the trace context,
// a request id, and header values none of which may reach a span.
func sensitiveRequest(t testing.TB, ws *testsupport.Development) *authv3.CheckRequest {
	t.Helper()
	toks, err := ws.Mint(1)
	if err != nil {
		t.Fatal(err)
	}
	cr := testsupport.CheckRequest("POST", "/conversations/channels/"+testsupport.KiteChannel(1)+"/MarkReadCommand", toks.Kite, `{"messageId":"m-secret-body-7"}`)
	h := cr.Attributes.Request.Http.Headers
	h["traceparent"], h["tracestate"], h["x-request-id"] = testTraceparent, testTracestate, testRequestID
	h["cookie"] = "session=cookie-secret-91c3"
	h["x-api-key"] = "header-secret-5e8b"
	h["user-agent"] = "secret-agent/7.3 (header value)"
	return cr
}

// forbiddenIn lists what of cr no span may carry: its token, every header
// value but the request id (a span's guestgate.request_id, validated hex),
// its body. Values shorter than 8 bytes ("https", a content length) are
// left out: they are in any export (a schema URL, a number) by chance.
func forbiddenIn(cr *authv3.CheckRequest) []string {
	h := cr.GetAttributes().GetRequest().GetHttp()
	out := []string{h.GetBody()}
	for name, v := range h.GetHeaders() {
		if name == "x-request-id" || len(v) < 8 {
			continue
		}
		out = append(out, v)
		if tok, ok := strings.CutPrefix(v, "Bearer "); ok {
			// The token, and each of its parts.
			out = append(out, strings.Split(tok, ".")...)
		}
	}
	return out
}

// spanTree is the spans of one trace as a tree, for the log and the
// assertions: the root first, then its children in the order they began.
type spanTree struct {
	root     *tracev1.Span
	children []*tracev1.Span
}

func treeOf(t *testing.T, spans []*tracev1.Span) spanTree {
	t.Helper()
	var tr spanTree
	for _, s := range spans {
		if s.GetName() == spanCheck {
			if tr.root != nil {
				t.Fatalf("two %s spans", spanCheck)
			}
			tr.root = s
		}
	}
	if tr.root == nil {
		t.Fatalf("no %s span among %d", spanCheck, len(spans))
	}
	for _, s := range spans {
		if s != tr.root {
			tr.children = append(tr.children, s)
		}
	}
	sort.SliceStable(tr.children, func(i, j int) bool {
		return tr.children[i].GetStartTimeUnixNano() < tr.children[j].GetStartTimeUnixNano()
	})
	return tr
}

func (tr spanTree) String() string {
	var b strings.Builder
	line := func(prefix string, s *tracev1.Span) {
		fmt.Fprintf(&b, "%s%s [%s] trace=%x span=%x parent=%x status=%s\n", prefix, s.GetName(),
			strings.TrimPrefix(s.GetKind().String(), "SPAN_KIND_"), s.GetTraceId(), s.GetSpanId(), s.GetParentSpanId(),
			strings.TrimPrefix(s.GetStatus().GetCode().String(), "STATUS_CODE_"))
		for _, kv := range sortedAttrs(s) {
			fmt.Fprintf(&b, "%s    %s = %s\n", strings.Repeat(" ", len(prefix)), kv.GetKey(), attrText(kv.GetValue()))
		}
	}
	line("", tr.root)
	for i, c := range tr.children {
		prefix := "├─ "
		if i == len(tr.children)-1 {
			prefix = "└─ "
		}
		line(prefix, c)
	}
	return b.String()
}

func sortedAttrs(s *tracev1.Span) []*commonv1.KeyValue {
	kvs := slices.Clone(s.GetAttributes())
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].GetKey() < kvs[j].GetKey() })
	return kvs
}

func attrText(v *commonv1.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonv1.AnyValue_StringValue:
		return fmt.Sprintf("%q", x.StringValue)
	case *commonv1.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *commonv1.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	}
	return prototext.Format(v)
}

// attrs is a span's attributes as Go values.
func attrs(s *tracev1.Span) map[string]any {
	out := map[string]any{}
	for _, kv := range s.GetAttributes() {
		switch x := kv.GetValue().GetValue().(type) {
		case *commonv1.AnyValue_StringValue:
			out[kv.GetKey()] = x.StringValue
		case *commonv1.AnyValue_BoolValue:
			out[kv.GetKey()] = x.BoolValue
		case *commonv1.AnyValue_IntValue:
			out[kv.GetKey()] = x.IntValue
		default:
			out[kv.GetKey()] = kv.GetValue()
		}
	}
	return out
}

// checkTree asserts the shape every traced check has: the check's span, a
// server span under the request's parent, and its three steps under it.
func checkTree(t *testing.T, tr spanTree, parent string) {
	t.Helper()
	wantTrace, _ := hex.DecodeString(testTraceID)
	wantParent, _ := hex.DecodeString(parent)
	if !bytes.Equal(tr.root.GetTraceId(), wantTrace) || !bytes.Equal(tr.root.GetParentSpanId(), wantParent) {
		t.Errorf("check span in trace %x under %x, want trace %s under %s", tr.root.GetTraceId(), tr.root.GetParentSpanId(), testTraceID, parent)
	}
	if tr.root.GetKind() != tracev1.Span_SPAN_KIND_SERVER {
		t.Errorf("check span kind %v, want server", tr.root.GetKind())
	}
	var names []string
	for _, c := range tr.children {
		names = append(names, c.GetName())
		if !bytes.Equal(c.GetParentSpanId(), tr.root.GetSpanId()) || !bytes.Equal(c.GetTraceId(), wantTrace) {
			t.Errorf("%s is not a child of the check span", c.GetName())
		}
	}
	if want := []string{spanVerify, spanEvaluate, spanDecision}; !slices.Equal(names, want) {
		t.Errorf("children %v, want %v", names, want)
	}
}

func TestCheckSpanTreeReachesAnOTLPCollector(t *testing.T) {
	cases := []struct {
		name, protocol string
		mode           collectorTLS
		urlPath        string
	}{
		{"grpc", config.TracingGRPC, plaintext, ""},
		{"grpc over TLS", config.TracingGRPC, serverTLS, ""},
		{"grpc over mutual TLS", config.TracingGRPC, mutualTLS, ""},
		{"http", config.TracingHTTP, plaintext, ""},
		{"http over TLS at its own path", config.TracingHTTP, serverTLS, "/otlp/v1/traces"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			col, cfg := startCollector(t, tc.protocol, tc.mode, tc.urlPath)
			c, ws, flush := tracedChecker(t, cfg, "")
			cr := sensitiveRequest(t, ws)
			client := authv3.NewAuthorizationClient(loopback(t, c.Register))
			resp, err := client.Check(context.Background(), cr)
			if err != nil || resp.GetOkResponse() == nil {
				t.Fatalf("Check: %v %v, want an allow", err, resp)
			}
			flush()

			spans, resource, text := col.Received()
			if len(spans) != 4 {
				t.Fatalf("collector received %d spans, want 4 (the check and its three steps)", len(spans))
			}
			tr := treeOf(t, spans)
			t.Logf("span tree of one Check (%s):\n%s", tc.name, tr)
			checkTree(t, tr, testParentID)

			revision := c.engine.Load().Revision()
			want := map[string]map[string]any{
				spanCheck: {"guestgate.request_id": testRequestID, "guestgate.allowed": true, "guestgate.status": int64(200),
					"guestgate.reason": ReasonAllowed, "guestgate.token.kind": "xbs_anonymous", "guestgate.policy.revision": revision},
				spanVerify:   {"guestgate.token.kind": "xbs_anonymous"},
				spanEvaluate: {"guestgate.policy.revision": revision, "guestgate.decision.cached": false},
				spanDecision: {"guestgate.allowed": true, "guestgate.status": int64(200), "guestgate.reason": ReasonAllowed},
			}
			for _, s := range spans {
				if got := attrs(s); fmt.Sprint(got) != fmt.Sprint(want[s.GetName()]) {
					t.Errorf("%s attributes\n got %v\nwant %v", s.GetName(), got, want[s.GetName()])
				}
				if len(s.GetEvents()) != 0 || len(s.GetLinks()) != 0 {
					t.Errorf("%s has events or links: %v %v", s.GetName(), s.GetEvents(), s.GetLinks())
				}
				if s.GetTraceState() != "" {
					t.Errorf("%s carries the client's tracestate %q", s.GetName(), s.GetTraceState())
				}
			}
			res := map[string]string{}
			for _, kv := range resource {
				res[kv.GetKey()] = kv.GetValue().GetStringValue()
			}
			if res["service.name"] != "guestgate-under-test" || res["service.version"] != "test-version" {
				t.Errorf("resource %v, want the configured service name and the version", res)
			}
			// Nothing of the request but the request id, anywhere in what
			// the collector received: attributes, events, status, names.
			if !strings.Contains(text, testRequestID) {
				t.Fatal("the request id is not in the export: the search below would prove nothing")
			}
			for _, secret := range forbiddenIn(cr) {
				if strings.Contains(text, secret) {
					t.Errorf("the collector received %q from the request", secret)
				}
			}
		})
	}
}

// TestRepeatedCheckSaysTheDecisionCacheAnswered: the first of identical
// checks is evaluated; by the last the decision cache answers (it admits a
// decision once it has seen it again), and from then on it does.
func TestRepeatedCheckSaysTheDecisionCacheAnswered(t *testing.T) {
	col, cfg := startCollector(t, config.TracingGRPC, plaintext, "")
	c, ws, flush := tracedChecker(t, cfg, "")
	cr := sensitiveRequest(t, ws)
	const checks = 3
	for range checks {
		if d := c.Decide(context.Background(), cr); !d.Allowed {
			t.Fatalf("denied: %s", d.Reason)
		}
	}
	flush()
	spans, _, _ := col.Received()
	var cached []any
	for _, s := range treeOrder(spans, spanEvaluate) {
		cached = append(cached, attrs(s)["guestgate.decision.cached"])
	}
	t.Logf("guestgate.decision.cached of %d identical checks: %v", checks, cached)
	if len(cached) != checks || cached[0] != false || cached[checks-1] != true {
		t.Fatalf("guestgate.decision.cached of %d identical checks = %v, want false first and true last", checks, cached)
	}
	for i := 1; i < checks; i++ {
		if cached[i-1] == true && cached[i] == false {
			t.Fatalf("a cached decision was evaluated again: %v", cached)
		}
	}
}

// treeOrder is the spans named name in the order they began.
func treeOrder(spans []*tracev1.Span, name string) []*tracev1.Span {
	var out []*tracev1.Span
	for _, s := range spans {
		if s.GetName() == name {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetStartTimeUnixNano() < out[j].GetStartTimeUnixNano() })
	return out
}

func TestEveryWireOfTheCheckIsTraced(t *testing.T) {
	cases := []struct {
		name string
		form string
		call func(t *testing.T, c *Checker, ws *testsupport.Development)
	}{
		{"grpc", "", func(t *testing.T, c *Checker, ws *testsupport.Development) {
			if _, err := authv3.NewAuthorizationClient(loopback(t, c.Register)).Check(context.Background(), sensitiveRequest(t, ws)); err != nil {
				t.Fatal(err)
			}
		}},
		{"http check, nginx form", config.HTTPCheckNginx, func(t *testing.T, c *Checker, ws *testsupport.Development) {
			srv := httptest.NewServer(c.HTTP(http.NotFoundHandler()))
			t.Cleanup(srv.Close)
			toks, err := ws.Mint(1)
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest(http.MethodGet, srv.URL+config.DefaultHTTPCheckPrefix, nil)
			req.Header.Set("X-Original-Method", "GET")
			req.Header.Set("X-Original-URI", "/v1/launchpads/"+testsupport.Launchpad(1)+"/apps")
			req.Header.Set("Authorization", "Bearer "+toks.SAT)
			req.Header.Set("Traceparent", testTraceparent)
			resp, err := decideClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("HTTP check answered %d, want 200", resp.StatusCode)
			}
		}},
		{"decision endpoint", "", func(t *testing.T, c *Checker, ws *testsupport.Development) {
			srv := httptest.NewServer(c.DecideHandler())
			t.Cleanup(srv.Close)
			toks, err := ws.Mint(1)
			if err != nil {
				t.Fatal(err)
			}
			got := decide(t, srv.URL, DecideRequest{Method: "GET", Path: "/v1/launchpads/" + testsupport.Launchpad(1) + "/apps",
				Token: toks.SAT, Headers: map[string]string{"traceparent": testTraceparent}})
			if !got.Allowed {
				t.Fatalf("decision endpoint denied: %s", got.Reason)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			col, cfg := startCollector(t, config.TracingGRPC, plaintext, "")
			c, ws, flush := tracedChecker(t, cfg, tc.form)
			tc.call(t, c, ws)
			flush()
			spans, _, _ := col.Received()
			if len(spans) != 4 {
				t.Fatalf("collector received %d spans, want 4", len(spans))
			}
			checkTree(t, treeOf(t, spans), testParentID)
		})
	}
}

func TestSamplingFollowsTheParentThenTheRatio(t *testing.T) {
	unsampled := "00-" + testTraceID + "-" + testParentID + "-00"
	cases := []struct {
		name        string
		ratio       float64
		traceparent string
		want        int // spans exported
	}{
		{"no parent, ratio 1", 1, "", 4},
		{"no parent, ratio 0", 0, "", 0},
		{"sampled parent, ratio 0", 0, testTraceparent, 4},
		{"unsampled parent, ratio 1", 1, unsampled, 0},
		{"malformed parent, ratio 0", 0, "00-" + testTraceID + "-" + testParentID, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			col, cfg := startCollector(t, config.TracingGRPC, plaintext, "")
			cfg.SampleRatio = &tc.ratio
			c, ws, flush := tracedChecker(t, cfg, "")
			cr := sensitiveRequest(t, ws)
			delete(cr.Attributes.Request.Http.Headers, "traceparent")
			if tc.traceparent != "" {
				cr.Attributes.Request.Http.Headers["traceparent"] = tc.traceparent
			}
			if d := c.Decide(context.Background(), cr); !d.Allowed {
				t.Fatalf("denied: %s", d.Reason)
			}
			flush()
			if spans, _, _ := col.Received(); len(spans) != tc.want {
				t.Fatalf("%d spans exported, want %d", len(spans), tc.want)
			}
		})
	}
}

func TestCheckSpanParentComesFromTheCallThenTheRequest(t *testing.T) {
	const callParent, headerParent = "1111111111111111", "2222222222222222"
	tp := func(span string) string { return "00-" + testTraceID + "-" + span + "-01" }
	headers := func(kv ...string) *authv3.CheckRequest {
		cr := checkRequest("GET", "/", map[string]string{}, "")
		for i := 0; i < len(kv); i += 2 {
			cr.Attributes.Request.Http.Headers[kv[i]] = kv[i+1]
		}
		return cr
	}
	headerMap := func(vals ...string) *authv3.CheckRequest {
		cr := checkRequest("GET", "/", nil, "")
		cr.Attributes.Request.Http.Headers = nil
		hm := &corev3.HeaderMap{}
		for _, v := range vals {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: "Traceparent", RawValue: []byte(v)})
		}
		cr.Attributes.Request.Http.HeaderMap = hm
		return cr
	}
	cases := []struct {
		name string
		md   []string // the gRPC call's traceparent metadata
		cr   *authv3.CheckRequest
		want string // the parent span id; "" for a new trace
	}{
		{"the request's header", nil, headers("traceparent", tp(headerParent)), headerParent},
		{"the call's metadata", []string{tp(callParent)}, headers(), callParent},
		{"the call's metadata before the header", []string{tp(callParent)}, headers("traceparent", tp(headerParent)), callParent},
		{"a malformed call's falls back to the header", []string{"00-zz"}, headers("traceparent", tp(headerParent)), headerParent},
		{"two in the call's fall back to the header", []string{tp(callParent), tp(callParent)}, headers("traceparent", tp(headerParent)), headerParent},
		{"the request's header_map", nil, headerMap(tp(headerParent)), headerParent},
		{"two in header_map: none", nil, headerMap(tp(headerParent), tp(callParent)), ""},
		{"an all-zero trace id: none", nil, headers("traceparent", "00-00000000000000000000000000000000-"+headerParent+"-01"), ""},
		{"tracestate alone: none", nil, headers("tracestate", testTracestate), ""},
		{"nothing: none", nil, headers(), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.md != nil {
				md := metadata.MD{}
				for _, v := range tc.md {
					md.Append("traceparent", v)
				}
				ctx = metadata.NewIncomingContext(ctx, md)
			}
			sc := trace.SpanContextFromContext(withParent(ctx, tc.cr))
			got := ""
			if sc.IsValid() {
				got = sc.SpanID().String()
				if sc.TraceID().String() != testTraceID || !sc.IsRemote() || sc.TraceState().Len() != 0 {
					t.Fatalf("parent %v: want trace %s, remote, no tracestate", sc, testTraceID)
				}
			}
			if got != tc.want {
				t.Fatalf("parent span %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTracingOffMakesNoProviderAndNoSpan(t *testing.T) {
	tp, err := NewTracerProvider(context.Background(), config.Tracing{Enabled: false, Protocol: config.TracingGRPC}, "v")
	if err != nil || tp != nil {
		t.Fatalf("tracing off: provider %v, error %v; want neither", tp, err)
	}
	c, ws := shippedChecker(t, 0, 0)
	cr := sensitiveRequest(t, ws)
	ctx, span := c.startCheck(context.Background(), cr)
	if _, noop := span.(noop.Span); !noop || span.IsRecording() || trace.SpanContextFromContext(ctx).IsValid() {
		t.Fatalf("a check is traced with tracing off: %T", span)
	}
	if _, step := c.startStep(ctx, spanVerify); step.IsRecording() || step.SpanContext().IsValid() {
		t.Fatalf("a step is traced with tracing off: %T", step)
	}
}

func TestTracerProviderRefusesUnusableTLSFiles(t *testing.T) {
	dir := t.TempDir()
	notPEM := writeFile(t, dir, "not.pem", []byte("no certificate here"))
	cases := []struct {
		name string
		edit func(*config.Tracing)
		key  string
	}{
		{"missing CA file", func(c *config.Tracing) { c.CAFile = filepath.Join(dir, "missing.pem") }, "tracing.ca_file"},
		{"CA file without a certificate", func(c *config.Tracing) { c.CAFile = notPEM }, "tracing.ca_file"},
		{"client certificate that is not one", func(c *config.Tracing) { c.CertFile, c.KeyFile = notPEM, notPEM }, "tracing.cert_file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Tracing{Enabled: true, Protocol: config.TracingGRPC, Endpoint: "127.0.0.1:4317"}
			tc.edit(&cfg)
			tp, err := NewTracerProvider(context.Background(), cfg, "v")
			if err == nil || !strings.Contains(err.Error(), tc.key) || tp != nil {
				t.Fatalf("provider %v, error %v; want an error naming %s", tp, err, tc.key)
			}
		})
	}
}

// BenchmarkCheckTraced is a Kite command through the shipped policy with
// tracing on, exporting to a collector on loopback: "sampled" makes and
// exports four spans per check, "unsampled" (ratio 0, no parent) decides
// not to. The export's cost in the same process (the collector's part is
// small: it keeps nothing) is in the time. BenchmarkCheckShippedPolicy/
// xbs_kite_command/hit is the same check with tracing off.
func BenchmarkCheckTraced(b *testing.B) {
	for _, tc := range []struct {
		name  string
		ratio float64
	}{{"sampled", 1}, {"unsampled", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			col, cfg := startCollector(b, config.TracingGRPC, plaintext, "")
			col.Discard.Store(true)
			cfg.SampleRatio = &tc.ratio
			c, ws, flush := tracedChecker(b, cfg, "")
			cr := sensitiveRequest(b, ws)
			delete(cr.Attributes.Request.Http.Headers, "traceparent")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if resp, _ := c.Check(ctx, cr); resp.GetOkResponse() == nil {
					b.Fatal("denied")
				}
			}
			flush()
		})
	}
}
