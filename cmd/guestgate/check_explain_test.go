package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/tokens"
	"github.com/guestgate/guestgate/wiring"
)

// chatCheck writes a token file of a kite session of widget bound to
// channel kite-1, and a CheckRequest sending command in channel, and
// returns their paths (run from the repository root).
func chatCheck(t *testing.T, widget, channel, command string) (request, tokenFile string) {
	t.Helper()
	cfg, err := config.Development()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := wiring.Signer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := signer.MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryKite, WidgetID: widget, ChannelID: "kite-1"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tokenFile = filepath.Join(dir, "token.jwt")
	path := fmt.Sprintf("/conversations/channels/%s/%s", channel, command)
	req := fmt.Sprintf(`{"attributes": {"request": {"http": {"method": "POST", "path": %q, "host": "chat.example.com",
		"headers": {":authority": "chat.example.com", ":method": "POST", ":path": %q, "content-type": "application/json"}}}}}`, path, path)
	request = filepath.Join(dir, "request.json")
	if err := os.WriteFile(tokenFile, []byte(tok.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(request, []byte(req), 0o600); err != nil {
		t.Fatal(err)
	}
	return request, tokenFile
}

// policyLine is the line of policies/file holding text.
func policyLine(t *testing.T, file, text string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("policies", file))
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, text) {
			return i + 1
		}
	}
	t.Fatalf("policies/%s has no line holding %q", file, text)
	return 0
}

func checkOutput(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run(append([]string{"check"}, args...), nil, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	return out.String()
}

// TestCheckExplainNamesTheRuleThatDeniedAChatCommandAndTheDataItRead is
// the policy author's question, "why was this visitor refused?", answered
// without reading Go: the line of the rule that denied, and the registry or
// command list entry it read.
func TestCheckExplainNamesTheRuleThatDeniedAChatCommandAndTheDataItRead(t *testing.T) {
	repoRoot(t)
	cases := []struct {
		name, widget, channel, command string
		reason, deniedAt, data         string
	}{
		{"widget with sessions off", "W-OFF", "kite-1", "MarkReadCommand", "widget_disabled",
			`else := "widget_disabled" if {`, `read data.registry.widgets["W-OFF"] = {"anonymous_sessions":false,"channels":[]}`},
		{"command not on the list", "W-DEMO", "kite-1", "DeleteChannelCommand", "command_not_allowed",
			`else := "command_not_allowed" if {`, `read data.chat.anonymous_commands = ["GetTokenCommand",`},
		{"another channel than the bound one", "W-DEMO", "support-1", "MarkReadCommand", "channel_not_bound",
			`} else := "channel_not_bound" if {`, `failed: chat.channel in {null, input.token.claims["custom:channel_id"]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			request, tokenFile := chatCheck(t, c.widget, c.channel, c.command)
			out := checkOutput(t, "--request", request, "--token-file", tokenFile, "--explain")
			if !strings.HasPrefix(out, "decision: denied  status: 403  reason: "+c.reason) {
				t.Fatalf("output:\n%s", out)
			}
			line := fmt.Sprintf("anonymous.rego:%d  data.guestgate.anonymous.", policyLine(t, "anonymous.rego", c.deniedAt))
			if !strings.Contains(out, line) || !strings.Contains(out, `= "`+c.reason+`"`) || !strings.Contains(out, c.data) {
				t.Fatalf("the explanation lacks %q or %q:\n%s", line, c.data, out)
			}
		})
	}
}

func TestCheckFormatJSONCarriesTheExplanationShadowAndInput(t *testing.T) {
	repoRoot(t)
	request, tokenFile := chatCheck(t, "W-OFF", "kite-1", "MarkReadCommand")
	// The candidate turns the widget's sessions on.
	candidate := t.TempDir()
	testsupport.CopyTree(t, "policies", candidate)
	widgets := filepath.Join(candidate, "registry", "widgets.json")
	b, err := os.ReadFile(widgets)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(widgets, bytes.Replace(b, []byte(`"anonymous_sessions": false`), []byte(`"anonymous_sessions": true`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Allowed bool   `json:"allowed"`
		Reason  string `json:"reason"`
		Shadow  *struct {
			Allowed bool   `json:"allowed"`
			Reason  string `json:"reason"`
		} `json:"shadow"`
		Agrees      *bool `json:"agrees"`
		Explanation *struct {
			Steps []struct {
				File string `json:"file"`
				Line int    `json:"line"`
				Rule string `json:"rule"`
				Data []struct {
					Ref string `json:"ref"`
				} `json:"data"`
			} `json:"steps"`
		} `json:"explanation"`
		ShadowExplanation any `json:"shadow_explanation"`
		Input             struct {
			Attributes struct {
				Request struct {
					HTTP struct {
						Headers map[string]string `json:"headers"`
					} `json:"http"`
				} `json:"request"`
			} `json:"attributes"`
			Token struct {
				Kind string `json:"kind"`
			} `json:"token"`
		} `json:"input"`
		CheckResponse map[string]any `json:"check_response"`
	}
	out := checkOutput(t, "--request", request, "--token-file", tokenFile, "--shadow", candidate, "--explain", "--print-input", "--format", "json")
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	if got.Allowed || got.Reason != "widget_disabled" || got.Shadow == nil || !got.Shadow.Allowed || got.Agrees == nil || *got.Agrees {
		t.Fatalf("live %v %s, shadow %+v, agrees %v", got.Allowed, got.Reason, got.Shadow, got.Agrees)
	}
	read := false
	for _, st := range got.Explanation.Steps {
		for _, d := range st.Data {
			read = read || d.Ref == `data.registry.widgets["W-OFF"]` && st.File == "anonymous.rego" && st.Line > 0
		}
	}
	if !read || got.ShadowExplanation == nil {
		t.Fatalf("explanation %+v, shadow's %v", got.Explanation, got.ShadowExplanation)
	}
	if h := got.Input.Attributes.Request.HTTP.Headers["authorization"]; h != "Bearer <redacted>" || got.Input.Token.Kind != "xbs_anonymous" {
		t.Fatalf("input authorization %q, token kind %q", h, got.Input.Token.Kind)
	}
	if got.CheckResponse["deniedResponse"] == nil {
		t.Fatalf("check_response %v", got.CheckResponse)
	}
	if tok, _ := os.ReadFile(tokenFile); strings.Contains(out, string(tok)) {
		t.Fatal("the raw token is in the output")
	}
}

func TestCheckInspectionFlagsAreOfflineOnly(t *testing.T) {
	for _, flag := range []string{"--explain", "--print-input"} {
		var out, errOut bytes.Buffer
		if code := run([]string{"check", "--addr", "127.0.0.1:1", "--request", "x.json", flag}, nil, &out, &errOut); code != 1 ||
			!strings.Contains(errOut.String(), "offline") {
			t.Fatalf("%s with --addr: exit %d, %s", flag, code, errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "--request", "x.json", "--format", "yaml"}, nil, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "--format") {
		t.Fatalf("--format yaml: exit %d, %s", code, errOut.String())
	}
}
