package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/tokens"
)

// TestPlaygroundShowsTheShadowsAnswerAndWhyInARealBrowser: with a shadow
// policy that lets widget W-OFF's visitors in, the page shows the live
// denial, the shadow's allow, that they differ, and the rule line and the
// registry entry that denied.
func TestPlaygroundShowsTheShadowsAnswerAndWhyInARealBrowser(t *testing.T) {
	tab, problems := browser(t, 90*time.Second)
	candidate := t.TempDir()
	repoRoot(t)
	testsupport.CopyTree(t, "policies", candidate)
	widgets := filepath.Join(candidate, "registry", "widgets.json")
	b, err := os.ReadFile(widgets)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(widgets, []byte(strings.Replace(string(b), `"anonymous_sessions": false`, `"anonymous_sessions": true`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startSidecar(t, func() *config.Config {
		cfg, err := config.Development()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Policy.Shadow = config.Shadow{Dir: candidate, Queue: 16}
		return cfg
	}(), nil)
	session, err := signerOf(t, s).MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryKite, WidgetID: "W-OFF", ChannelID: "kite-1"})
	if err != nil {
		t.Fatal(err)
	}
	var verdict, shadow, agrees, why, input string
	step(t, tab, "decide a command of a disabled widget",
		chromedp.Navigate("http://"+s.adminLis.Addr().String()+"/playground/"),
		chromedp.Click("#tab-decide", chromedp.ByQuery),
		chromedp.WaitVisible("#decide-form", chromedp.ByQuery),
		chromedp.SetValue("#decide-method", "POST", chromedp.ByQuery),
		chromedp.SetValue("#decide-path", "/conversations/channels/kite-1/MarkReadCommand", chromedp.ByQuery),
		chromedp.SetValue("#decide-token", session.Token, chromedp.ByQuery),
		chromedp.Click("#decide-button", chromedp.ByQuery),
		waitText(tab, "#decide-verdict", "DENIED", &verdict),
		waitText(tab, "#decide-shadow-verdict", "ALLOWED", &shadow),
		waitText(tab, "#decide-shadow-agrees", "NO", &agrees),
		waitText(tab, "#decide-explanation", `data.registry.widgets["W-OFF"]`, &why),
		chromedp.Text("#decide-input", &input, chromedp.ByQuery),
	)
	if !strings.Contains(why, "anonymous.rego:") || !strings.Contains(why, `data.guestgate.anonymous.kite_reason = "widget_disabled"`) {
		t.Errorf("the explanation on the page lacks the deciding rule:\n%s", why)
	}
	if !strings.Contains(input, `"authorization": "Bearer <redacted>"`) || strings.Contains(input, session.Token) {
		t.Errorf("the input on the page:\n%s", input)
	}
	screenshot(t, tab, "playground-shadow.png")
	if p := problems(); len(p) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(p, "\n"))
	}
}
