package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/tokens"
)

// caddyfile is the Caddy config the end-to-end test runs, and the one
// docs/caddy.md points deployments at.
const caddyfile = "testdata/caddy/Caddyfile"

// startCaddy runs Debian's caddy with the Caddyfile, listening on a Unix
// socket of its own (Caddy 2.6 can listen on port 0 but never says which
// port it got; a socket path is ours alone, so nothing depends on a port
// being free), stopped (TERM, then KILL) when the test ends and in any
// case within two minutes. It returns a client whose every connection
// goes to that socket.
func startCaddy(t *testing.T, bin, guestgate, upstream string) *http.Client {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "caddy.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, bin, "run", "--config", caddyfile, "--adapter", "caddyfile")
	// Caddy keeps its state under XDG_DATA_HOME and XDG_CONFIG_HOME: the
	// scratch directory, not this machine's.
	cmd.Env = []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir,
		"GUESTGATE_HTTP=" + guestgate, "UPSTREAM=" + upstream, "CADDY_BIND=unix/" + sock}
	var out testsupport.LogBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start caddy: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}
	// Bounded polling (testsupport.Eventually): caddy is a real process
	// that takes a moment to load its config and listen.
	testsupport.EventuallyState(t, "caddy to listen on "+sock, func() (bool, string) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("caddy exited: %v\n%s", err, out.String())
		default:
		}
		c, err := dial(context.Background(), "", "")
		if err != nil {
			return false, out.String()
		}
		c.Close()
		return true, ""
	})
	return &http.Client{Transport: &http.Transport{DialContext: dial}}
}

func findCaddy() string {
	p, err := exec.LookPath("caddy")
	if err != nil {
		return ""
	}
	return p
}

func TestCaddyForwardAuthInFrontOfGuestgate(t *testing.T) {
	bin := findCaddy()
	if bin == "" {
		t.Skip("caddy is not installed (Debian: apt-get install caddy; .ci/run installs it): skipping the Caddy end-to-end test")
	}
	cfg := devConfig(t)
	cfg.HTTPCheck = config.HTTPCheck{Form: config.HTTPCheckTraefik, PathPrefix: config.DefaultHTTPCheckPrefix}
	s := startSidecar(t, cfg, nil)
	upstream, hits := startEcho(t)
	client := startCaddy(t, bin, s.httpLis.Addr().String(), strings.TrimPrefix(upstream.URL, "http://"))

	signer := signerOf(t, s)
	kite, err := signer.MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryKite, WidgetID: "W-DEMO", ChannelID: "support-1"})
	if err != nil {
		t.Fatal(err)
	}
	sat, err := signer.MintSAT(tokens.SATClaims{AccountID: "dev-account", ProviderID: "dev-provider", Scope: "launchpads/lp-dev"})
	if err != nil {
		t.Fatal(err)
	}
	xbsIssuer, satIssuer := cfg.Minting.XBS.Issuer, cfg.Minting.SAT.Issuer

	send := func(t *testing.T, method, path string, headers map[string]string) (*http.Response, *echoed) {
		t.Helper()
		req, err := http.NewRequest(method, "http://caddy.test"+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		before := hits.Load()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if hits.Load() == before {
			return resp, nil
		}
		var e echoed
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Fatalf("upstream answer: %v", err)
		}
		// Whatever the case, no placeholder reaches the app as text.
		for k, v := range e.Headers {
			if strings.Contains(v, "{http.") || strings.Contains(v, "{vars.") {
				t.Errorf("upstream %s = %q: a Caddy placeholder went through as text", k, v)
			}
		}
		return resp, &e
	}
	wantHeaders := func(t *testing.T, e *echoed, want map[string]string) {
		t.Helper()
		for k, v := range want {
			if e.Headers[k] != v {
				t.Errorf("upstream %s = %q, want %q", k, e.Headers[k], v)
			}
		}
		if e.Headers["authorization"] != "" {
			t.Error("the credential reached the upstream")
		}
	}

	t.Run("allowed: identity headers copied, the ones guestgate did not send empty, the token kept back", func(t *testing.T) {
		resp, e := send(t, "POST", "/conversations/channels/support-1/MarkReadCommand", map[string]string{"Authorization": "Bearer " + kite.Token})
		if resp.StatusCode != http.StatusOK || e == nil {
			t.Fatalf("status %d, upstream reached: %v", resp.StatusCode, e != nil)
		}
		wantHeaders(t, e, map[string]string{
			"x-guestgate-subject": xbsIssuer + "|" + kite.Subject, "x-guestgate-kind": "xbs_anonymous", "x-guestgate-issuer": xbsIssuer,
			"x-guestgate-widget": "W-DEMO", "x-guestgate-channel": "support-1", "x-guestgate-scope": "",
		})
		if e.Headers["x-guestgate-request-id"] == "" {
			t.Error("no request id upstream")
		}
		if e.URI != "/conversations/channels/support-1/MarkReadCommand" || e.Method != "POST" {
			t.Errorf("upstream got %s %s", e.Method, e.URI)
		}
	})

	t.Run("allowed with a scope: the scope guestgate sent is copied", func(t *testing.T) {
		resp, e := send(t, "GET", "/v1/launchpads/lp-dev/items", map[string]string{"Authorization": "Bearer " + sat.Token})
		if resp.StatusCode != http.StatusOK || e == nil {
			t.Fatalf("status %d, upstream reached: %v", resp.StatusCode, e != nil)
		}
		wantHeaders(t, e, map[string]string{"x-guestgate-kind": "secure_anonymous", "x-guestgate-issuer": satIssuer,
			"x-guestgate-scope": "launchpads/lp-dev", "x-guestgate-widget": "", "x-guestgate-channel": ""})
	})

	t.Run("forbidden: guestgate's 403 reaches the client, the app is not called", func(t *testing.T) {
		resp, e := send(t, "POST", "/conversations/channels/support-1/ListCalendarEventsCommand", map[string]string{"Authorization": "Bearer " + kite.Token})
		if resp.StatusCode != http.StatusForbidden || e != nil {
			t.Fatalf("status %d, upstream reached: %v", resp.StatusCode, e != nil)
		}
		if resp.Header.Get("X-Guestgate-Reason") != "forbidden" || resp.Header.Get("X-Guestgate-Request-Id") == "" {
			t.Fatalf("headers to the client: %v", resp.Header)
		}
	})

	t.Run("no token: 401 with WWW-Authenticate", func(t *testing.T) {
		resp, e := send(t, "POST", "/conversations/GetTokenCommand", nil)
		if resp.StatusCode != http.StatusUnauthorized || e != nil {
			t.Fatalf("status %d, upstream reached: %v", resp.StatusCode, e != nil)
		}
		if resp.Header.Get("WWW-Authenticate") != "Bearer" {
			t.Fatalf("headers to the client: %v", resp.Header)
		}
	})

	t.Run("a client's forged identity headers never reach the app", func(t *testing.T) {
		forged := map[string]string{
			"X-Guestgate-Subject": "admin", "X-Guestgate-Kind": "regular", "X-Guestgate-Scope": "everything",
			"X-Guestgate-Channel": "team-private", "X-Guestgate-Role": "administrator",
		}
		if resp, e := send(t, "POST", "/conversations/GetTokenCommand", forged); resp.StatusCode != http.StatusUnauthorized || e != nil {
			t.Fatalf("forged identity without a token: status %d", resp.StatusCode)
		}
		forged["Authorization"] = "Bearer " + kite.Token
		resp, e := send(t, "POST", "/conversations/GetTokenCommand", forged)
		if resp.StatusCode != http.StatusOK || e == nil {
			t.Fatalf("status %d", resp.StatusCode)
		}
		wantHeaders(t, e, map[string]string{"x-guestgate-subject": xbsIssuer + "|" + kite.Subject, "x-guestgate-kind": "xbs_anonymous",
			"x-guestgate-channel": "support-1", "x-guestgate-scope": "", "x-guestgate-role": ""})
	})

	t.Run("a client's forged X-Forwarded-Uri decides nothing and never reaches the app", func(t *testing.T) {
		forged := map[string]string{"Authorization": "Bearer " + kite.Token,
			"X-Forwarded-Uri": "/conversations/GetTokenCommand", "X-Forwarded-Method": "POST"}
		if resp, e := send(t, "POST", "/conversations/channels/team-private/MarkReadCommand", forged); resp.StatusCode != http.StatusForbidden || e != nil {
			t.Fatalf("forbidden request with a forged X-Forwarded-Uri: status %d", resp.StatusCode)
		}
		forged["X-Forwarded-Uri"] = "/calendar/events"
		resp, e := send(t, "POST", "/conversations/GetTokenCommand", forged)
		if resp.StatusCode != http.StatusOK || e == nil {
			t.Fatalf("allowed request with a forged X-Forwarded-Uri: status %d", resp.StatusCode)
		}
		for _, h := range []string{"x-forwarded-uri", "x-forwarded-method"} {
			if e.Headers[h] != "" {
				t.Errorf("client-sent %s reached the upstream: %q", h, e.Headers[h])
			}
		}
	})

	// Every request above was decided by guestgate, through Caddy.
	m := testsupport.Scrape(t, metricsURL(s))
	for sample, want := range map[string]float64{
		`guestgate_checks_total{decision="allow",kind="xbs_anonymous",reason="allowed"}`:            3,
		`guestgate_checks_total{decision="allow",kind="secure_anonymous",reason="allowed"}`:         1,
		`guestgate_checks_total{decision="deny",kind="none",reason="missing_token"}`:                2,
		`guestgate_checks_total{decision="deny",kind="xbs_anonymous",reason="command_not_allowed"}`: 1,
		`guestgate_checks_total{decision="deny",kind="xbs_anonymous",reason="channel_not_bound"}`:   1,
	} {
		if got := testsupport.Metric(t, m, sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}
}
