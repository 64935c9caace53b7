package ext_authz

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/engine"
	"github.com/guestgate/guestgate/internal/testsupport"
)

// testPolicy decides on the request path alone, so each case below names
// the behaviour it exercises in the path.
const testPolicy = `package guestgate.authz

decision := {"allowed": true, "headers": {"x-guestgate-subject": "tester", "x-guestgate-name": input.parsed_query.name[0]}} if {
	input.parsed_path == ["allow"]
}

decision := {"allowed": true, "headers": {"x-guestgate-subject": "tester"}} if {
	input.parsed_path == ["allow-plain"]
}

decision := {"allowed": false, "http_status": 403, "reason": "command_not_allowed", "headers": {"x-extra": "1"}} if {
	input.parsed_path == ["deny"]
}

decision := {"allowed": false, "http_status": 401, "reason": "missing_token"} if {
	input.parsed_path == ["login"]
}

decision := true if input.parsed_path == ["bool-allow"]

decision := 5 if input.parsed_path == ["wrong-type"]

decision := {"allowed": "yes"} if input.parsed_path == ["allowed-not-bool"]

decision := {"allowed": true, "http_status": 403} if input.parsed_path == ["contradiction"]

# Two values for one complete rule: an evaluation (conflict) error.
decision := {"allowed": true} if input.parsed_path == ["conflict"]

decision := {"allowed": false} if input.parsed_path == ["conflict"]

decision := {"allowed": true, "headers": {"x-guestgate-echo": input.parsed_body.name}} if {
	input.parsed_path == ["body"]
}

decision := {"allowed": input.truncated_body == false} if input.parsed_path == ["needs-body"]

decision := {"allowed": true, "query_parameters_to_remove": ["debug"]} if input.parsed_path == ["strip-query"]
`

type harness struct {
	client  authv3.AuthorizationClient
	health  healthpb.HealthClient
	checker *Checker
	eng     *engine.Engine
	logs    *testsupport.LogBuffer
}

// policyEngine serves policy, the one file of a fresh directory (returned
// for the config's relative paths).
func policyEngine(tb testing.TB, policy string) (*engine.Engine, string) {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(policy), 0o600); err != nil {
		tb.Fatal(err)
	}
	eng, err := engine.New(engine.Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tb.Fatal(err)
	}
	return eng, dir
}

func startHarness(t *testing.T, policy string, ready bool) *harness {
	t.Helper()
	eng, dir := policyEngine(t, policy)
	cfg, err := config.Parse([]byte("decision_log:\n  full: true\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testsupport.LogBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	checker := New(Settings{Check: cfg.Check, DecisionLog: cfg.DecisionLog}, Options{Logger: logger})
	if ready {
		checker.SetEngine(eng)
	}
	conn := loopback(t, checker.Register)
	return &harness{client: authv3.NewAuthorizationClient(conn), health: healthpb.NewHealthClient(conn), checker: checker, eng: eng, logs: logs}
}

// loopback serves what register puts on a gRPC server with the check's
// own ServerOptions, on 127.0.0.1, and returns a connection to it.
func loopback(tb testing.TB, register func(*grpc.Server)) *grpc.ClientConn {
	tb.Helper()
	srv := grpc.NewServer(ServerOptions(config.DefaultMaxMessageBytes)...)
	register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	tb.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

func checkRequest(method, path string, headers map[string]string, body string) *authv3.CheckRequest {
	if headers == nil {
		headers = map[string]string{}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 50000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "1", Method: method, Path: path, Host: "chat.example", Scheme: "https", Protocol: "HTTP/1.1",
			Headers: headers, Body: body,
		}},
	}}
}

func (h *harness) check(t *testing.T, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := h.client.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check returned a gRPC error (must always answer): %v", err)
	}
	return resp
}

func headerMap(opts []*corev3.HeaderValueOption) map[string]string {
	m := map[string]string{}
	for _, o := range opts {
		m[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
	}
	return m
}

func denied(t *testing.T, resp *authv3.CheckResponse, status int, reason string) *authv3.DeniedHttpResponse {
	t.Helper()
	d := resp.GetDeniedResponse()
	if d == nil || resp.GetStatus().GetCode() == int32(code.Code_OK) {
		t.Fatalf("not denied: %v", resp)
	}
	if got := int(d.GetStatus().GetCode()); got != status {
		t.Fatalf("status = %d, want %d", got, status)
	}
	var body map[string]string
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
		t.Fatalf("deny body %q is not JSON: %v", d.GetBody(), err)
	}
	if body["request_id"] == "" || body["error"] != CoarseReason(status) {
		t.Fatalf("deny body = %v, want coarse reason and request id", body)
	}
	if reason != "" && body["reason"] != "" && body["reason"] != reason {
		t.Fatalf("reason = %q, want %q", body["reason"], reason)
	}
	return d
}

func TestAllowedRequestGetsPolicyHeadersAndRequestID(t *testing.T) {
	h := startHarness(t, testPolicy, true)
	resp := h.check(t, checkRequest("GET", "/allow?name=Zo%C3%AB%0D%0AX-Evil:%201", nil, ""))
	ok := resp.GetOkResponse()
	if ok == nil || resp.GetStatus().GetCode() != int32(code.Code_OK) {
		t.Fatalf("not allowed: %v", resp)
	}
	hs := headerMap(ok.GetHeaders())
	if hs["x-guestgate-subject"] != "tester" || hs["x-guestgate-request-id"] == "" {
		t.Fatalf("upstream headers = %v", hs)
	}
	if got := hs["x-guestgate-name"]; got != "Zo%C3%AB%0D%0AX-Evil: 1" {
		t.Fatalf("header value not encoded: %q", got)
	}
	for _, o := range ok.GetHeaders() {
		if o.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Fatalf("header %s appends instead of overwriting a client's value", o.GetHeader().GetKey())
		}
	}
}

func TestClientSentIdentityHeadersNeverReachUpstream(t *testing.T) {
	h := startHarness(t, testPolicy, true)
	resp := h.check(t, checkRequest("GET", "/allow-plain", map[string]string{
		"x-guestgate-subject": "admin", "x-guestgate-kind": "regular", "x-guestgate-scope": "everything",
	}, ""))
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("not allowed: %v", resp)
	}
	if headerMap(ok.GetHeaders())["x-guestgate-subject"] != "tester" {
		t.Fatal("forged subject not overwritten by the policy's")
	}
	removed := strings.Join(ok.GetHeadersToRemove(), ",")
	for _, name := range []string{"x-guestgate-kind", "x-guestgate-scope"} {
		if !strings.Contains(removed, name) {
			t.Errorf("forged %s not removed (removed: %s)", name, removed)
		}
	}
	if strings.Contains(removed, "x-guestgate-subject") {
		t.Error("a header both set and removed: its fate would depend on the proxy's order")
	}
}

func TestDeniedRequestCarriesStatusHeadersAndCoarseBody(t *testing.T) {
	h := startHarness(t, testPolicy, true)
	d := denied(t, h.check(t, checkRequest("POST", "/deny", nil, "")), 403, "command_not_allowed")
	hs := headerMap(d.GetHeaders())
	if hs["x-extra"] != "1" || hs["x-guestgate-request-id"] == "" || hs["content-type"] != "application/json" {
		t.Fatalf("deny headers = %v", hs)
	}
	if strings.Contains(d.GetBody(), "command_not_allowed") {
		t.Fatal("precise reason sent to the client outside the development setup")
	}
	if !strings.Contains(h.logs.String(), `"reason":"command_not_allowed"`) {
		t.Fatalf("decision log lacks the precise reason: %s", h.logs)
	}
}

func TestUnauthorizedAlwaysSaysHowToAuthenticate(t *testing.T) {
	h := startHarness(t, testPolicy, true)
	resp := h.check(t, checkRequest("GET", "/login", nil, ""))
	d := denied(t, resp, 401, "missing_token")
	if resp.GetStatus().GetCode() != int32(code.Code_UNAUTHENTICATED) {
		t.Fatalf("gRPC status = %v", resp.GetStatus())
	}
	if got := headerMap(d.GetHeaders())["www-authenticate"]; got != "Bearer" {
		t.Fatalf("www-authenticate = %q", got)
	}
}

func TestBadDecisionsDeny(t *testing.T) {
	h := startHarness(t, testPolicy, true)
	cases := map[string]string{
		"/undefined-path":   ReasonUndefined,
		"/wrong-type":       ReasonInvalid,
		"/allowed-not-bool": ReasonInvalid,
		"/contradiction":    ReasonInvalid,
		"/conflict":         ReasonPolicyError,
	}
	for path, reason := range cases {
		t.Run(path, func(t *testing.T) {
			denied(t, h.check(t, checkRequest("GET", path, nil, "")), 403, reason)
			if !strings.Contains(h.logs.String(), `"reason":"`+reason+`"`) {
				t.Fatalf("decision log lacks %s", reason)
			}
		})
	}
	if resp := h.check(t, checkRequest("GET", "/bool-allow", nil, "")); resp.GetOkResponse() == nil {
		t.Fatalf("a boolean true decision did not allow: %v", resp)
	}
}

func TestMalformedAndDuplicateKeyBodiesAreDenied(t *testing.T) {
	h := startHarness(t, testPolicy, true)
	json := map[string]string{"content-type": "application/json"}
	for name, body := range map[string]string{
		"malformed":     `{"name":`,
		"duplicate key": `{"name":"a","name":"b"}`,
		"not JSON":      `name=a`,
	} {
		t.Run(name, func(t *testing.T) {
			denied(t, h.check(t, checkRequest("POST", "/body", json, body)), 400, ReasonBadBody)
		})
	}
	resp := h.check(t, checkRequest("POST", "/body", json, `{"name":"ok"}`))
	if headerMap(resp.GetOkResponse().GetHeaders())["x-guestgate-echo"] != "ok" {
		t.Fatalf("parsed body not seen by the policy: %v", resp)
	}
}

func TestTruncatedBodyIsShownToThePolicy(t *testing.T) {
	h := startHarness(t, testPolicy, true)
	hs := map[string]string{"content-type": "application/json", "content-length": "100"}
	denied(t, h.check(t, checkRequest("POST", "/needs-body", hs, `{"a":`)), 403, "")
	hs["content-length"] = "2"
	if resp := h.check(t, checkRequest("POST", "/needs-body", hs, `{}`)); resp.GetOkResponse() == nil {
		t.Fatalf("whole body treated as truncated: %v", resp)
	}
}

func TestBadPathsAreDeniedBeforeThePolicy(t *testing.T) {
	h := startHarness(t, testPolicy, true)
	for _, p := range []string{"/allow/../admin", "/allow%2Fx", "//allow", "/allow\\x", "/%61llow"} {
		denied(t, h.check(t, checkRequest("GET", p, nil, "")), 400, ReasonBadPath)
	}
}

func TestRequestWithoutHTTPAttributesIsDenied(t *testing.T) {
	h := startHarness(t, testPolicy, true)
	resp := h.check(t, &authv3.CheckRequest{})
	if resp.GetOkResponse() != nil {
		t.Fatal("empty CheckRequest allowed")
	}
}

func TestHealthIsServingOnlyOnceAPolicyIsLoaded(t *testing.T) {
	h := startHarness(t, testPolicy, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, svc := range []string{"", "envoy.service.auth.v3.Authorization"} {
		r, err := h.health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("before load: %v %v", r, err)
		}
	}
	denied(t, h.check(t, checkRequest("GET", "/allow-plain", nil, "")), 503, ReasonNotReady)
	h.checker.SetEngine(h.eng)
	r, err := h.health.Check(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
	if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("after load: %v %v", r, err)
	}
	if resp := h.check(t, checkRequest("GET", "/allow-plain", nil, "")); resp.GetOkResponse() == nil {
		t.Fatalf("not allowed after load: %v", resp)
	}
}

func TestDecisionLogHoldsNoTokenOrBody(t *testing.T) {
	h := startHarness(t, testPolicy, true)
	const secretish = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
	h.check(t, checkRequest("POST", "/body?token="+secretish, map[string]string{
		"authorization": "Bearer " + secretish, "content-type": "application/json", "cookie": "s=" + secretish,
	}, `{"name":"body-secret-value"}`))
	logs := h.logs.String()
	if logs == "" {
		t.Fatal("no decision logged")
	}
	for _, s := range []string{secretish, "body-secret-value"} {
		if strings.Contains(logs, s) {
			t.Fatalf("decision log holds %q: %s", s, logs)
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	eng, dir := policyEngine(b, testPolicy)
	cfg, _ := config.Parse(nil, dir)
	c := New(Settings{Check: cfg.Check, DecisionLog: cfg.DecisionLog}, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	c.SetEngine(eng)
	req := checkRequest("GET", "/allow?name=bench", map[string]string{"x-request-id": "abc"}, "")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if resp, _ := c.Check(ctx, req); resp.GetOkResponse() == nil {
			b.Fatal("denied")
		}
	}
}
