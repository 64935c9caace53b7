package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/tokens"
)

// startDevWith runs the development setup, changed by edit, on loopback
// port 0, and returns it once ready.
func startDevWith(t *testing.T, edit func(*config.Config)) *sidecar {
	t.Helper()
	cfg := devConfig(t)
	if edit != nil {
		edit(cfg)
	}
	return startSidecar(t, cfg, nil)
}

// chromium finds Debian's Chromium; the test never downloads a browser.
func chromium() string {
	for _, name := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(name); err == nil {
			return name
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return ""
}

// browser starts headless Chromium with a fresh profile and returns a tab
// context bounded by timeout, and the console errors and exceptions seen.
func browser(t *testing.T, timeout time.Duration) (context.Context, func() []string) {
	t.Helper()
	bin := chromium()
	if bin == "" {
		t.Skip("no Chromium binary found (/usr/bin/chromium): install Debian's chromium package (.ci/run does) to run the playground's browser test")
	}
	// Chromium's helper processes may still write to the profile for a
	// moment after the browser is closed: the profile is removed with a
	// bounded retry once everything registered below has stopped.
	profile := t.TempDir()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for os.RemoveAll(profile) != nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
	})
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.NoSandbox, // as root, in a container
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 1400),
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		// Close the browser gracefully and wait for it, then cancel.
		_ = chromedp.Cancel(tab)
		cancelTab()
	})
	var mu sync.Mutex
	var problems []string
	chromedp.ListenTarget(tab, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+e.ExceptionDetails.Error())
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.APITypeError {
				var args []string
				for _, a := range e.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				problems = append(problems, "console.error: "+strings.Join(args, " "))
			}
		}
	})
	if err := chromedp.Run(tab); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	return tab, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), problems...)
	}
}

// waitText polls an element's textContent until it contains want: the page
// in the real browser updates on its own, and the step's context bounds
// the wait.
func waitText(ctx context.Context, sel, want string, got *string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		for {
			if err := chromedp.Text(sel, got, chromedp.ByQuery, chromedp.NodeVisible).Do(ctx); err == nil && strings.Contains(*got, want) {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
}

// step runs actions with their own bound, so a stuck page fails the step
// that is stuck, with its name.
func step(t *testing.T, tab context.Context, name string, actions ...chromedp.Action) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func TestPlaygroundDecidesAllowedAndDeniedChatCommandsInARealBrowser(t *testing.T) {
	tab, problems := browser(t, 90*time.Second)
	s := startDevWith(t, nil)
	page := "http://" + s.adminLis.Addr().String() + "/playground/"
	session, err := signerOf(t, s).MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryKite, WidgetID: "W-DEMO", ChannelID: "support-1"})
	if err != nil {
		t.Fatal(err)
	}

	var revision string
	step(t, tab, "open the page",
		chromedp.Navigate(page),
		waitText(tab, "#policy-revision", s.engine.Revision(), &revision),
		chromedp.Click("#tab-decide", chromedp.ByQuery),
		chromedp.WaitVisible("#decide-form", chromedp.ByQuery),
	)

	cases := []struct {
		name, path, verdict, status, reason string
		upstream                            []string // lines that go upstream
	}{
		{"allowed", "/conversations/channels/support-1/MarkReadCommand", "ALLOWED", "200", "allowed",
			[]string{"x-guestgate-kind: xbs_anonymous", "x-guestgate-widget: W-DEMO", "x-guestgate-channel: support-1"}},
		{"denied", "/conversations/channels/support-1/DeleteChannelCommand", "DENIED", "403", "command_not_allowed", nil},
	}
	for _, c := range cases {
		var verdict, status, reason, upstream, removed, rev string
		step(t, tab, "decide the "+c.name+" command",
			chromedp.SetValue("#decide-method", "POST", chromedp.ByQuery),
			chromedp.SetValue("#decide-path", c.path, chromedp.ByQuery),
			chromedp.SetValue("#decide-body", "{}", chromedp.ByQuery),
			chromedp.SetValue("#decide-token", session.Token, chromedp.ByQuery),
			chromedp.Click("#decide-button", chromedp.ByQuery),
			waitText(tab, "#decide-verdict", c.verdict, &verdict),
			waitText(tab, "#decide-reason", c.reason, &reason),
			chromedp.Text("#decide-status", &status, chromedp.ByQuery),
			chromedp.Text("#decide-revision", &rev, chromedp.ByQuery),
			chromedp.Text("#decide-upstream", &upstream, chromedp.ByQuery),
			chromedp.Text("#decide-removed", &removed, chromedp.ByQuery),
		)
		if verdict != c.verdict || status != c.status || reason != c.reason {
			t.Errorf("%s: page shows %q %q %q, want %q %q %q", c.name, verdict, status, reason, c.verdict, c.status, c.reason)
		}
		if rev != s.engine.Revision() {
			t.Errorf("%s: page shows policy revision %q, want %q", c.name, rev, s.engine.Revision())
		}
		for _, line := range c.upstream {
			if !strings.Contains(upstream, line) {
				t.Errorf("%s: upstream headers on the page lack %q:\n%s", c.name, line, upstream)
			}
		}
		if c.verdict == "ALLOWED" && (!strings.Contains(removed, "authorization") || strings.Contains(upstream, session.Token)) {
			t.Errorf("%s: the credential still goes upstream: removed %q, upstream %q", c.name, removed, upstream)
		}
	}
	screenshot(t, tab, "playground-decide.png")

	// Mistakes are shown: the page's own, and the endpoint's 400 as sent.
	var msg string
	step(t, tab, "a header line without a name",
		chromedp.SetValue("#decide-headers", "no colon here", chromedp.ByQuery),
		chromedp.Click("#decide-button", chromedp.ByQuery),
		waitText(tab, "#decide-error", "header line without a name", &msg),
	)
	step(t, tab, "a token with its scheme",
		chromedp.SetValue("#decide-headers", "content-type: application/json", chromedp.ByQuery),
		chromedp.SetValue("#decide-token", "Bearer "+session.Token, chromedp.ByQuery),
		chromedp.Click("#decide-button", chromedp.ByQuery),
		waitText(tab, "#decide-error", "token: contains whitespace", &msg),
	)
	if !strings.HasPrefix(msg, "400 Bad Request") {
		t.Errorf("the endpoint's refusal is shown as %q", msg)
	}
	if p := problems(); len(p) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(p, "\n"))
	}
}

// requireIssuerMounted fails the test when the admin listener has no SAT
// route at all (the mux's own 404, not an issuer's refusal of an unknown
// provider): the development setup mounts the issuer there, and a wiring
// that lost it is the regression these tests are for.
func requireIssuerMounted(t *testing.T, admin string) {
	t.Helper()
	resp, err := testClient.Post(admin+"/v1/accounts/probe/secure-anonymous/probe/tokens", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode == http.StatusNotFound && string(b) == "404 page not found\n" {
		t.Fatal("the admin listener has no SAT route (POST /v1/accounts/{account_id}/secure-anonymous/{provider_id}/tokens): the issuer is not mounted")
	}
}

// screenshot saves the page into the test's artifact directory (kept with
// go test -artifacts), and into $GUESTGATE_PLAYGROUND_SCREENSHOT when set
// (how docs/playground.png is made).
func screenshot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	var png []byte
	step(t, tab, "screenshot", chromedp.FullScreenshot(&png, 100))
	if len(png) == 0 {
		t.Fatal("empty screenshot")
	}
	out := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", out)
	if dst := os.Getenv("GUESTGATE_PLAYGROUND_SCREENSHOT"); dst != "" {
		if err := os.WriteFile(dst, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// devSATSecret is the development administrator integration's secret.
func devSATSecret(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "dev", "secrets", "sat-admin-dev.secret"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestPlaygroundMintsASecureAnonymousTokenInARealBrowser(t *testing.T) {
	tab, problems := browser(t, 90*time.Second)
	s := startDevWith(t, nil)
	admin := "http://" + s.adminLis.Addr().String()
	requireIssuerMounted(t, admin)
	secret := devSATSecret(t)

	// Every request the page sends is recorded: the secret must be in none.
	var mu sync.Mutex
	var sent []string
	chromedp.ListenTarget(tab, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			defer mu.Unlock()
			var b strings.Builder
			b.WriteString(e.Request.Method + " " + e.Request.URL)
			for k, v := range e.Request.Headers {
				fmt.Fprintf(&b, "\n%s: %v", k, v)
			}
			for _, entry := range e.Request.PostDataEntries {
				b.WriteString("\n" + entry.Bytes)
			}
			sent = append(sent, b.String())
		}
	})

	var provider, claims, header, expiry, token string
	step(t, tab, "open the page and fill the Mint tab",
		network.Enable(),
		chromedp.Navigate(admin+"/playground/"),
		waitText(tab, "#mint-provider", "dev-provider", &provider),
		chromedp.SendKeys("#mint-client-id", "dev-admin", chromedp.ByQuery),
		chromedp.SendKeys("#mint-secret", secret, chromedp.ByQuery),
		chromedp.Click("#mint-form summary", chromedp.ByQuery),
		chromedp.SendKeys("#mint-first-name", "Ada", chromedp.ByQuery),
		chromedp.Click("#mint-button", chromedp.ByQuery),
		waitText(tab, "#mint-claims", `"scope": "launchpads/lp-dev"`, &claims),
		chromedp.Text("#mint-header", &header, chromedp.ByQuery),
		chromedp.Text("#mint-expiry", &expiry, chromedp.ByQuery),
		chromedp.Text("#mint-token", &token, chromedp.ByQuery),
	)
	for _, want := range []string{`"first_name": "Ada"`, `"provider_id": "dev-provider"`, `"account_id": "dev-account"`} {
		if !strings.Contains(claims, want) {
			t.Errorf("claims on the page lack %s:\n%s", want, claims)
		}
	}
	if !strings.Contains(header, `"alg": "ES256"`) || !strings.Contains(expiry, "(in 60 min)") {
		t.Errorf("header %q, expiry %q", header, expiry)
	}
	tok, err := s.verifier.Load().Verify(context.Background(), token)
	if err != nil || tok.Kind != tokens.KindSecureAnonymous {
		t.Fatalf("the token on the page does not verify as a SAT: %v", err)
	}

	// A second mint at once is signed with a fresh nonce: not a replay.
	var second string
	step(t, tab, "mint again at once",
		chromedp.Click("#mint-button", chromedp.ByQuery),
		chromedp.ActionFunc(func(ctx context.Context) error {
			for {
				if err := chromedp.Text("#mint-token", &second, chromedp.ByQuery).Do(ctx); err == nil && second != token && second != "" {
					return nil
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(50 * time.Millisecond):
				}
			}
		}),
	)

	// The examples shown are the served ones, with this request's fields.
	var curl string
	step(t, tab, "read the curl example",
		waitText(tab, "#example-code-curl", `"first_name":"Ada"`, &curl),
	)
	if !strings.Contains(curl, "CLIENT_ID='dev-admin'") || strings.Contains(curl, secret) {
		t.Errorf("curl example does not carry the client id, or carries the secret:\n%s", curl)
	}
	if out := runExample(t, "bash", curl, secret); !strings.HasPrefix(out, "\"ey") {
		t.Errorf("the curl example as shown on the page did not mint: %q", out)
	}

	// Errors are shown as the API returns them.
	var status string
	step(t, tab, "mint with a wrong secret",
		chromedp.SetValue("#mint-secret", "not-the-secret-of-dev-admin-at-all", chromedp.ByQuery),
		chromedp.Click("#mint-button", chromedp.ByQuery),
		waitText(tab, "#mint-status", "signature_invalid", &status),
	)
	if !strings.Contains(status, "401") {
		t.Errorf("status on the page = %q, want the API's 401", status)
	}
	step(t, tab, "put the good secret back", chromedp.SetValue("#mint-secret", secret, chromedp.ByQuery),
		chromedp.Click("#mint-button", chromedp.ByQuery),
		waitText(tab, "#mint-status", "minted", &status))
	screenshot(t, tab, "playground-mint.png")

	mu.Lock()
	defer mu.Unlock()
	for _, req := range sent {
		if strings.Contains(req, secret) {
			t.Errorf("the client secret left the browser:\n%s", req)
		}
	}
	if len(sent) < 4 {
		t.Errorf("only %d requests recorded: the network listener saw nothing", len(sent))
	}
	if p := problems(); len(p) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(p, "\n"))
	}
}

func TestPlaygroundWidgetSessionAndGuestLoginInARealBrowser(t *testing.T) {
	tab, problems := browser(t, 90*time.Second)
	// One session per widget per 100 s: the second start shows the API's 429.
	s := startDevWith(t, func(c *config.Config) {
		c.Issuer.RateLimits.PerClient = config.Rate{PerSecond: 0.01, Burst: 1}
	})
	admin := "http://" + s.adminLis.Addr().String()
	requireIssuerMounted(t, admin)
	var revision, claims, channel, verdict, path, status string
	step(t, tab, "start a widget session",
		chromedp.Navigate(admin+"/playground/"),
		waitText(tab, "#policy-revision", s.engine.Revision(), &revision),
		chromedp.Click("#tab-widget", chromedp.ByQuery),
		chromedp.SetValue("#widget-id", "W-DEMO", chromedp.ByQuery),
		chromedp.Click("#widget-button", chromedp.ByQuery),
		waitText(tab, "#widget-claims", `"custom:wid": "W-DEMO"`, &claims),
		chromedp.Text("#widget-channel", &channel, chromedp.ByQuery),
	)
	if channel == "" || !strings.Contains(claims, `"custom:channel_id": "`+channel+`"`) {
		t.Fatalf("channel %q is not the token's:\n%s", channel, claims)
	}
	step(t, tab, "decide with the session",
		chromedp.Click("#widget-use", chromedp.ByQuery),
		chromedp.WaitVisible("#decide-form", chromedp.ByQuery),
		chromedp.Value("#decide-path", &path, chromedp.ByQuery),
		chromedp.Click("#decide-button", chromedp.ByQuery),
		waitText(tab, "#decide-verdict", "ALLOWED", &verdict),
	)
	if path != "/conversations/channels/"+channel+"/MarkReadCommand" {
		t.Errorf("Use in Decide set the path %q", path)
	}
	step(t, tab, "start a second session over the limit",
		chromedp.Click("#tab-widget", chromedp.ByQuery),
		chromedp.Click("#widget-button", chromedp.ByQuery),
		waitText(tab, "#widget-status", "429", &status),
	)
	if !strings.Contains(status, "Retry-After") || !strings.Contains(status, "rate_limited") {
		t.Errorf("the 429 is not shown as the API returns it: %q", status)
	}

	secret, err := os.ReadFile(filepath.Join("testdata", "dev", "secrets", "guest-dev.b64"))
	if err != nil {
		t.Fatal(err)
	}
	step(t, tab, "log a guest in with a token signed in the page",
		chromedp.Click("#tab-guest", chromedp.ByQuery),
		chromedp.SetValue("#guest-iss", "dev-guest-issuer", chromedp.ByQuery),
		chromedp.SetValue("#guest-secret", strings.TrimSpace(string(secret)), chromedp.ByQuery),
		chromedp.SetValue("#guest-sub", "visitor-7", chromedp.ByQuery),
		chromedp.Click("#guest-button", chromedp.ByQuery),
		waitText(tab, "#guest-claims", `"scope": "messaging calling people"`, &claims),
		chromedp.Text("#guest-status", &status, chromedp.ByQuery),
	)
	if !strings.Contains(status, "200") || !strings.Contains(status, "2159") {
		t.Errorf("guest login status %q", status)
	}
	if p := problems(); len(p) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(p, "\n"))
	}
}
