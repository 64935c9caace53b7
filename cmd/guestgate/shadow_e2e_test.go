package main

import (
	"compress/gzip"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/tokens"
)

// TestServeRunsTheShadowPolicyAndTheOPADecisionLog serves the development
// setup with a shadow policy (the shipped one with widget W-OFF's sessions
// on) and the OPA decision log sent to a local endpoint, and checks what
// the wiring promises: the live answer is the live policy's, the
// disagreement is counted in /metrics and logged, the shadow shows in
// /readyz, and the decision reaches the endpoint in OPA's format.
func TestServeRunsTheShadowPolicyAndTheOPADecisionLog(t *testing.T) {
	var mu sync.Mutex
	var events []map[string]any
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			t.Errorf("upload not gzip: %v", err)
			return
		}
		var batch []map[string]any
		if err := json.NewDecoder(zr).Decode(&batch); err != nil {
			t.Errorf("upload: %v", err)
		}
		mu.Lock()
		events = append(events, batch...)
		mu.Unlock()
	}))
	t.Cleanup(ep.Close)

	dir, cfgPath := testsupport.CopyDevelopment(t, map[string]string{
		"decision_log:\n  full: true": "  shadow:\n    dir: ../candidate\n\ndecision_log:\n  full: true\n  opa:\n    url: " + ep.URL + "/logs\n    batch_size: 1",
	})
	testsupport.CopyTree(t, filepath.Join(dir, "policies"), filepath.Join(dir, "candidate"))
	widgets := filepath.Join(dir, "candidate", "registry", "widgets.json")
	b, err := os.ReadFile(widgets)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(widgets, []byte(strings.Replace(string(b), `"anonymous_sessions": false`, `"anonymous_sessions": true`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lineBuffer{}
	s, _, _ := runSidecar(t, cfg, logs)

	kite, err := signerOf(t, s).MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryKite, WidgetID: "W-OFF", ChannelID: "kite-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, status := grpcCheck(t, s, "POST", "/conversations/channels/kite-1/MarkReadCommand", kite.Token); status != http.StatusForbidden {
		t.Fatalf("live answer %d, want the live policy's 403", status)
	}
	// The shadow decides in its own goroutine, the log is sent in another.
	testsupport.EventuallyState(t, "the disagreement counted", func() (bool, string) {
		out := testsupport.Scrape(t, metricsURL(s))
		return testsupport.Metric(t, out, `guestgate_shadow_decisions_total{live="widget_disabled",shadow="allowed"}`) == 1, ""
	})
	if !strings.Contains(logs.String(), `"msg":"shadow decision differs"`) || !strings.Contains(logs.String(), `"shadow_reason":"allowed"`) {
		t.Fatalf("no disagreement line:\n%s", logs.String())
	}
	var rd readiness
	if resp, err := http.Get("http://" + s.adminLis.Addr().String() + "/readyz"); err != nil {
		t.Fatal(err)
	} else {
		err = json.NewDecoder(resp.Body).Decode(&rd)
		resp.Body.Close()
		if err != nil || rd.Shadow == nil || rd.Shadow.Revision == "" || rd.Shadow.Revision == rd.Policy.Revision {
			t.Fatalf("readyz %+v (%v): want the shadow's own revision", rd, err)
		}
	}
	testsupport.EventuallyState(t, "the decision at the OPA log endpoint", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(events) == 1, ""
	})
	mu.Lock()
	ev := events[0]
	mu.Unlock()
	raw, _ := json.Marshal(ev)
	if ev["path"] != "guestgate/authz/decision" || ev["result"].(map[string]any)["reason"] != "widget_disabled" ||
		ev["labels"].(map[string]any)["id"] == "" || strings.Contains(string(raw), kite.Token) {
		t.Fatalf("event %s", raw)
	}
}
