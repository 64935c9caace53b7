package ext_authz

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/decisionlog"
	"github.com/guestgate/guestgate/engine"
	"github.com/guestgate/guestgate/internal/testsupport"
)

// TestOPADecisionLogCarriesNoTokenSecretOrBody decides requests that carry
// a real token, a cookie, a query credential and a body, each with a
// secret, through a Checker whose OPA decision log goes to a local
// endpoint, and reads everything the endpoint received: OPA's event
// format, the codes and who the token names, and none of the secrets.
func TestOPADecisionLogCarriesNoTokenSecretOrBody(t *testing.T) {
	var mu sync.Mutex
	var received []byte
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			t.Errorf("not gzip: %v", err)
			return
		}
		b, _ := io.ReadAll(zr)
		mu.Lock()
		received = append(received, b...)
		received = append(received, '\n')
		mu.Unlock()
	}))
	t.Cleanup(ep.Close)

	ws, err := testsupport.LoadDevelopment(devConfig)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ws.Verifier(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	discard := slog.New(slog.NewJSONHandler(io.Discard, nil))
	eng, err := engine.New(engine.Options{Dir: ws.Config.Policy.Dir, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	sender, err := decisionlog.New(decisionlog.Options{URL: ep.URL + "/logs", BatchSize: 100, Gzip: true, Logger: discard,
		Labels: map[string]string{"id": "test-instance"}})
	if err != nil {
		t.Fatal(err)
	}
	defaults, err := config.Parse(nil, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := New(Settings{Verifier: v, Check: ws.Config.Check, DecisionLog: defaults.DecisionLog},
		Options{Logger: discard, Observer: Observers{NewOPALog(sender, engine.DefaultQuery)}})
	c.SetEngine(eng)

	toks, err := ws.Mint(1)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "zz-secret-value"
	requests := []struct {
		path, token string
	}{
		{"/conversations/channels/" + testsupport.KiteChannel(1) + "/MarkReadCommand?access_token=" + secret + "&q=" + secret, toks.Kite},
		{"/conversations/channels/support-1/DeleteChannelCommand", toks.Kite},
		{"/v1/messages", "eyJhbGciOiJIUzI1NiJ9." + secret + ".c2ln"},
		{"/conversations/GetTokenCommand", ""},
	}
	for _, r := range requests {
		headers := map[string]string{"cookie": "session=" + secret, "x-api-key": secret, "content-type": "application/json"}
		if r.token != "" {
			headers["authorization"] = "Bearer " + r.token
		}
		c.Decide(context.Background(), checkRequest("POST", r.path, headers, `{"password":"`+secret+`"}`))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sender.Run(ctx) // stopped already: sends what is buffered, once, and returns

	mu.Lock()
	got := string(received)
	mu.Unlock()
	for _, leak := range []string{secret, toks.Kite, strings.Split(toks.Kite, ".")[2]} {
		if strings.Contains(got, leak) {
			t.Fatalf("the endpoint received a secret (%.20s...):\n%s", leak, got)
		}
	}
	var events []map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(got)), &events); err != nil {
		t.Fatalf("%v:\n%s", err, got)
	}
	if len(events) != len(requests) {
		t.Fatalf("%d events for %d decisions", len(events), len(requests))
	}
	want := []struct{ reason, tokenErr, kind, path string }{
		{"allowed", "", "xbs_anonymous", "/conversations/channels/" + testsupport.KiteChannel(1) + "/MarkReadCommand"},
		{"command_not_allowed", "", "xbs_anonymous", "/conversations/channels/support-1/DeleteChannelCommand"},
		{"invalid_token", "malformed", "", "/v1/messages"},
		{"missing_token", "missing", "", "/conversations/GetTokenCommand"},
	}
	for i, ev := range events {
		in := ev["input"].(map[string]any)
		http := in["attributes"].(map[string]any)["request"].(map[string]any)["http"].(map[string]any)
		res := ev["result"].(map[string]any)
		if ev["path"] != "guestgate/authz/decision" || ev["decision_id"] == "" || ev["revision"] != eng.Revision() ||
			ev["labels"].(map[string]any)["id"] != "test-instance" || ev["timestamp"] == "" || ev["metrics"].(map[string]any)["timer_server_handler_ns"] == nil {
			t.Fatalf("event %d lacks OPA's fields: %v", i, ev)
		}
		if res["reason"] != want[i].reason || http["path"] != want[i].path || http["method"] != "POST" || in["request_id"] == "" {
			t.Fatalf("event %d: %v", i, ev)
		}
		tok, _ := in["token"].(map[string]any)
		if want[i].kind != "" && (tok["kind"] != want[i].kind || tok["subject"] == "" || in["token_error"] != nil) ||
			want[i].kind == "" && (tok != nil || in["token_error"] != want[i].tokenErr) {
			t.Fatalf("event %d token %v token_error %v", i, in["token"], in["token_error"])
		}
		if _, has := tok["claims"]; has {
			t.Fatalf("event %d carries the token's claims", i)
		}
	}
}
