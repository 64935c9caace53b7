package ext_authz

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/guestgate/guestgate/config"
)

// TestPolicyDenyBodyIsNeverSniffedAsHTML: a policy's deny body may carry
// text from the request. Without a content type the HTTP check's answer
// was sniffed as text/html by Go (and passed to the client by Envoy's
// HTTP ext_authz): script on the protected origin. A body without the
// policy's own content-type goes as text/plain, never sniffed.
func TestPolicyDenyBodyIsNeverSniffedAsHTML(t *testing.T) {
	eng, dir := policyEngine(t, `package guestgate.authz

decision := {"allowed": false, "body": concat("", ["<html><script>", input.attributes.request.http.path, "</script></html>"])}
`)
	cfg, err := config.Parse([]byte("http_check:\n  form: envoy\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	c := New(Settings{Check: cfg.Check, DecisionLog: cfg.DecisionLog, HTTPCheck: cfg.HTTPCheck},
		Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	c.SetEngine(eng)

	d := c.Decide(context.Background(), checkRequest("GET", "/x", nil, ""))
	if d.Allowed || !strings.HasPrefix(d.DenyBody, "<html>") {
		t.Fatalf("decision %+v", d)
	}
	if ct := headerSet(d.DenyHeaders); !ct.has("content-type") {
		t.Errorf("gRPC denial without a content-type: %v", d.DenyHeaders)
	}

	srv := httptest.NewServer(c.HTTP(http.NotFoundHandler()))
	defer srv.Close()
	resp, err := http.Get(srv.URL + strings.TrimSuffix(config.DefaultHTTPCheckPrefix, "/") + "/x")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("HTTP check denial has Content-Type %q, want text/plain", ct)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("HTTP check denial without X-Content-Type-Options: nosniff")
	}
}
