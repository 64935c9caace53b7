package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/tokens"
)

// nginxTemplate is the nginx config the end-to-end test runs, and the one
// the README points deployments at.
const nginxTemplate = "testdata/nginx/nginx.conf.tmpl"

// findNginx finds Debian's nginx; /usr/sbin is not on every user's PATH.
func findNginx() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	return ""
}

// echoed is what the upstream received.
type echoed struct {
	Method  string            `json:"method"`
	URI     string            `json:"uri"`
	Headers map[string]string `json:"headers"`
}

// startEcho is the upstream: it answers with what it received.
func startEcho(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		e := echoed{Method: r.Method, URI: r.RequestURI, Headers: map[string]string{}}
		for k, vs := range r.Header {
			e.Headers[strings.ToLower(k)] = strings.Join(vs, ",")
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(e)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// startNginx renders the template into a scratch directory and runs nginx
// in the foreground, stopped (TERM, then KILL) when the test ends and in
// any case within two minutes. It returns nginx's address.
func startNginx(t *testing.T, bin, guestgate, checkPrefix, upstream string) string {
	t.Helper()
	tmpl, err := template.ParseFiles(nginxTemplate)
	if err != nil {
		t.Fatal(err)
	}
	user := ""
	if os.Geteuid() == 0 {
		// Workers would drop to nobody, who cannot use the scratch
		// directory: they run as the user the test runs as.
		user = "root"
	}
	// A free port is only free until someone takes it: a few tries.
	var lastErr string
	for attempt := 0; attempt < 3; attempt++ {
		dir := t.TempDir()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		conf := filepath.Join(dir, "nginx.conf")
		f, err := os.Create(conf)
		if err != nil {
			t.Fatal(err)
		}
		err = tmpl.Execute(f, map[string]string{"Dir": dir, "User": user, "Listen": addr,
			"Guestgate": guestgate, "CheckPrefix": checkPrefix, "Upstream": upstream})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
		var out testsupport.LogBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		// The master stops its workers on TERM; KILL only if it does not.
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 10 * time.Second
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatalf("start nginx: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		stop := func() {
			cancel()
			<-exited
		}
		if up(addr, exited) {
			t.Cleanup(stop)
			return addr
		}
		stop()
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		lastErr = out.String() + string(log)
	}
	t.Fatalf("nginx did not start:\n%s", lastErr)
	return ""
}

// up waits (10 s at most) for nginx, a real process, to answer on addr, or
// to exit: a bound on its start-up, never a measure of it.
func up(addr string, exited <-chan error) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func TestNginxAuthRequestInFrontOfGuestgate(t *testing.T) {
	bin := findNginx()
	if bin == "" {
		t.Skip("nginx is not installed (Debian: apt-get install nginx; .ci/run installs it): skipping the nginx end-to-end test")
	}
	cfg := devConfig(t)
	cfg.HTTPCheck = config.HTTPCheck{Form: config.HTTPCheckNginx, PathPrefix: config.DefaultHTTPCheckPrefix}
	logs := &testsupport.LogBuffer{}
	s := startSidecar(t, cfg, logs)
	upstream, hits := startEcho(t)
	addr := startNginx(t, bin, s.httpLis.Addr().String(), cfg.HTTPCheck.PathPrefix, strings.TrimPrefix(upstream.URL, "http://"))

	kite, err := signerOf(t, s).MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryKite, WidgetID: "W-DEMO", ChannelID: "support-1"})
	if err != nil {
		t.Fatal(err)
	}
	bearer := "Bearer " + kite.Token
	xbsIssuer := cfg.Minting.XBS.Issuer

	send := func(t *testing.T, method, path string, headers map[string]string) (*http.Response, *echoed) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		before := hits.Load()
		resp, err := http.DefaultClient.Do(req)
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
		return resp, &e
	}

	t.Run("anonymous chat command allowed with identity headers upstream", func(t *testing.T) {
		for _, path := range []string{"/conversations/GetTokenCommand", "/conversations/channels/support-1/MarkReadCommand"} {
			resp, e := send(t, "POST", path, map[string]string{"Authorization": bearer})
			if resp.StatusCode != http.StatusOK || e == nil {
				t.Fatalf("%s: status %d, upstream reached: %v", path, resp.StatusCode, e != nil)
			}
			want := map[string]string{
				"x-guestgate-subject": xbsIssuer + "|" + kite.Subject,
				"x-guestgate-kind":    "xbs_anonymous",
				"x-guestgate-issuer":  xbsIssuer,
				"x-guestgate-widget":  "W-DEMO",
				"x-guestgate-channel": "support-1",
			}
			for k, v := range want {
				if e.Headers[k] != v {
					t.Errorf("%s: upstream %s = %q, want %q", path, k, e.Headers[k], v)
				}
			}
			if id := e.Headers["x-guestgate-request-id"]; id == "" || id != resp.Header.Get("X-Guestgate-Request-Id") {
				t.Errorf("%s: request id upstream %q, to the client %q", path, id, resp.Header.Get("X-Guestgate-Request-Id"))
			}
			if e.Headers["authorization"] != "" {
				t.Errorf("%s: the credential reached the upstream", path)
			}
			if e.URI != path || e.Method != "POST" {
				t.Errorf("upstream got %s %s", e.Method, e.URI)
			}
		}
	})

	t.Run("forbidden command is 403 with the coarse reason and request id", func(t *testing.T) {
		resp, e := send(t, "POST", "/conversations/channels/support-1/ListCalendarEventsCommand", map[string]string{"Authorization": bearer})
		if resp.StatusCode != http.StatusForbidden || e != nil {
			t.Fatalf("status %d, upstream reached: %v", resp.StatusCode, e != nil)
		}
		if resp.Header.Get("X-Guestgate-Reason") != "forbidden" || resp.Header.Get("X-Guestgate-Request-Id") == "" {
			t.Fatalf("headers to the client: %v", resp.Header)
		}
	})

	t.Run("no token is 401 with WWW-Authenticate", func(t *testing.T) {
		resp, e := send(t, "POST", "/conversations/GetTokenCommand", nil)
		if resp.StatusCode != http.StatusUnauthorized || e != nil {
			t.Fatalf("status %d, upstream reached: %v", resp.StatusCode, e != nil)
		}
		if resp.Header.Get("WWW-Authenticate") != "Bearer" || resp.Header.Get("X-Guestgate-Reason") != "unauthorized" {
			t.Fatalf("headers to the client: %v", resp.Header)
		}
	})

	t.Run("forged identity headers have no effect", func(t *testing.T) {
		forged := map[string]string{
			"X-Guestgate-Subject": "admin", "X-Guestgate-Kind": "regular", "X-Guestgate-Scope": "everything",
			"X-Guestgate-Channel": "team-private",
		}
		if resp, e := send(t, "POST", "/conversations/GetTokenCommand", forged); resp.StatusCode != http.StatusUnauthorized || e != nil {
			t.Fatalf("forged identity without a token: status %d", resp.StatusCode)
		}
		forged["Authorization"] = bearer
		resp, e := send(t, "POST", "/conversations/GetTokenCommand", forged)
		if resp.StatusCode != http.StatusOK || e == nil {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if e.Headers["x-guestgate-subject"] != xbsIssuer+"|"+kite.Subject || e.Headers["x-guestgate-kind"] != "xbs_anonymous" ||
			e.Headers["x-guestgate-channel"] != "support-1" || e.Headers["x-guestgate-scope"] != "" {
			t.Fatalf("forged identity reached the upstream: %v", e.Headers)
		}
	})

	t.Run("forged X-Original-URI has no effect", func(t *testing.T) {
		forged := map[string]string{
			"Authorization": bearer, "X-Original-URI": "/conversations/GetTokenCommand", "X-Original-Method": "POST",
			"X-Forwarded-Uri": "/conversations/GetTokenCommand", "X-Forwarded-Method": "POST",
		}
		// A forbidden request does not become the allowed one it names...
		resp, e := send(t, "POST", "/conversations/channels/team-private/MarkReadCommand", forged)
		if resp.StatusCode != http.StatusForbidden || e != nil {
			t.Fatalf("forbidden request with a forged X-Original-URI: status %d", resp.StatusCode)
		}
		// ...an allowed one is decided on its own URI, and the forgery
		// never reaches the upstream.
		forged["X-Original-URI"] = "/calendar/events"
		resp, e = send(t, "POST", "/conversations/GetTokenCommand", forged)
		if resp.StatusCode != http.StatusOK || e == nil {
			t.Fatalf("allowed request with a forged X-Original-URI: status %d", resp.StatusCode)
		}
		for _, h := range []string{"x-original-uri", "x-original-method", "x-forwarded-uri", "x-forwarded-method"} {
			if e.Headers[h] != "" {
				t.Errorf("client-sent %s reached the upstream", h)
			}
		}
	})

	// Every request above was decided once, by guestgate, through nginx.
	m := testsupport.Scrape(t, metricsURL(s))
	for sample, want := range map[string]float64{
		`guestgate_checks_total{decision="allow",kind="xbs_anonymous",reason="allowed"}`:            4,
		`guestgate_checks_total{decision="deny",kind="none",reason="missing_token"}`:                2,
		`guestgate_checks_total{decision="deny",kind="xbs_anonymous",reason="command_not_allowed"}`: 1,
		`guestgate_checks_total{decision="deny",kind="xbs_anonymous",reason="channel_not_bound"}`:   1,
	} {
		if got := testsupport.Metric(t, m, sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}
	if out := logs.String(); !strings.Contains(out, `"msg":"decision"`) || strings.Contains(out, kite.Token) || strings.Contains(out, strings.Split(kite.Token, ".")[2]) {
		t.Errorf("decision log missing, or holding the token:\n%s", out)
	}
}
