package ext_authz

import (
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/engine"
)

func TestPathsAProxyAndAnUpstreamCouldReadDifferentlyAreRefused(t *testing.T) {
	bad := map[string]string{
		"relative":             "conversations/GetTokenCommand",
		"dot-dot":              "/conversations/../admin",
		"dot":                  "/conversations/./GetTokenCommand",
		"trailing dot-dot":     "/conversations/..",
		"empty segment":        "/conversations//GetTokenCommand",
		"backslash":            "/conversations\\admin",
		"encoded slash":        "/conversations/a%2Fb",
		"encoded slash lower":  "/conversations/a%2fb",
		"encoded backslash":    "/conversations/a%5Cb",
		"encoded dot":          "/conversations/%2E%2E/admin",
		"encoded letter":       "/conversations/%41dmin",
		"lower-case hex":       "/conversations/caf%c3%a9",
		"truncated escape":     "/conversations/a%2",
		"not hex":              "/conversations/a%zz",
		"encoded NUL":          "/conversations/a%00",
		"encoded newline":      "/conversations/a%0A",
		"raw space":            "/conversations/a b",
		"raw control":          "/conversations/a\x01",
		"fragment":             "/conversations/a#b",
		"encoded percent ok?":  "/conversations/%25%2F",
		"encoded tilde":        "/conversations/%7E",
		"encoded hyphen":       "/conversations/%2D",
		"empty":                "",
		"double leading slash": "//conversations",
	}
	for name, p := range bad {
		t.Run(name, func(t *testing.T) {
			if why := checkPath(p); why == "" {
				t.Errorf("checkPath(%q) accepted", p)
			}
		})
	}
	good := []string{"/", "/conversations/GetTokenCommand", "/conversations/channels/c-1/MarkReadCommand",
		"/v1/people/caf%C3%A9", "/a/%25", "/a/b.c/..d/d..", "/v1/launchpads/lp-1/"}
	for _, p := range good {
		if why := checkPath(p); why != "" {
			t.Errorf("checkPath(%q) refused: %s", p, why)
		}
	}
}

func TestParsedPathIsDecodedSegments(t *testing.T) {
	got := splitPath("/v1/people/caf%C3%A9/x")
	want := []string{"v1", "people", "café", "x"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("splitPath = %q, want %q", got, want)
	}
	if got := splitPath("/"); len(got) != 0 {
		t.Fatalf("splitPath(/) = %q, want []", got)
	}
}

func TestJSONBodyParsesStrictly(t *testing.T) {
	cases := []struct {
		name, doc string
		ok        bool
	}{
		{"object", `{"a":1,"b":[true,null,"x",1.5e3],"c":{"d":{}}}`, true},
		{"array", `[1,2]`, true},
		{"duplicate top-level key", `{"a":1,"a":2}`, false},
		{"duplicate nested key", `{"a":{"b":1,"b":1}}`, false},
		{"duplicate in array element", `[{"x":1,"x":2}]`, false},
		{"trailing data", `{"a":1} {"b":2}`, false},
		{"truncated", `{"a":`, false},
		{"not json", `toPersonId=x`, false},
		{"too deep", strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1), false},
		{"deep but bounded", strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := parseJSONValue([]byte(c.doc))
			if c.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !c.ok && err == nil {
				t.Fatalf("accepted as %v", v)
			}
		})
	}
	v, err := parseJSONValue([]byte(`{"n":12345678901234567890,"s":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := v.(ast.Object).Get(ast.StringTerm("n")).String(); got != "12345678901234567890" {
		t.Fatalf("large number lost precision: %s", got)
	}
}

func TestHeaderValuesGuestgateWritesCannotSplitAHeader(t *testing.T) {
	cases := map[string]string{
		"plain":          "plain",
		"a\r\nX-Evil: 1": "a%0D%0AX-Evil: 1",
		"100%":           "100%25",
		"Zoë":            "Zo%C3%AB",
		"tab\there":      "tab%09here",
	}
	for in, want := range cases {
		if got := encodeHeaderValue(in); got != want {
			t.Errorf("encodeHeaderValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBearerTokenIsTakenOnlyWithItsScheme(t *testing.T) {
	cases := []struct{ header, scheme, want string }{
		{"Bearer abc", "Bearer", "abc"},
		{"bearer abc", "Bearer", "abc"},
		{"Bearer  abc ", "Bearer", "abc"},
		{"Basic abc", "Bearer", ""},
		{"Bearerabc", "Bearer", ""},
		{"Bearer", "Bearer", ""},
		{"", "Bearer", ""},
		{"abc", "-", "abc"},
	}
	for _, c := range cases {
		if got := tokenFromHeader(c.header, c.scheme); got != c.want {
			t.Errorf("tokenFromHeader(%q, %q) = %q, want %q", c.header, c.scheme, got, c.want)
		}
	}
}

func TestCookieCredentialIsFoundAndRemoved(t *testing.T) {
	h := "a=1; gg_token=abc.def.ghi; b=2"
	if got, present := cookieValue(h, "gg_token"); got != "abc.def.ghi" || !present {
		t.Fatalf("cookieValue = %q, %v", got, present)
	}
	if got := withoutCookie(h, "gg_token"); got != "a=1; b=2" {
		t.Fatalf("withoutCookie = %q", got)
	}
	if got := withoutCookie("gg_token=x", "gg_token"); got != "" {
		t.Fatalf("withoutCookie of the only cookie = %q", got)
	}
}

// TestQueryCredentialIsRedactedEverywhereInTheInput: a token carried in a
// query parameter (public-chat links) is replaced in every place the
// policy input shows the query (the path, the query, Envoy's :path and
// x-envoy-original-path, parsed_query), however the client spelled it.
func TestQueryCredentialIsRedactedEverywhereInTheInput(t *testing.T) {
	// The plan of a policy that reads every part of the input.
	everything := newInputPlan(engine.Snapshot{}, inputFormat{})
	chk := config.Check{Credentials: []config.Credential{{Query: "token"}}}
	for name, rawQuery := range map[string]string{
		"plain":                "a=1&token=tokpartA.tokpartB.tokpartC&b=2",
		"percent-encoded":      "a=1&token=tokpartA%2EtokpartB%2EtokpartC&b=2",
		"name percent-encoded": "to%6Ben=tokpartA.tokpartB.tokpartC",
		"first parameter":      "token=tokpartA.tokpartB.tokpartC",
	} {
		t.Run(name, func(t *testing.T) {
			path := "/conversations/channels/public-lobby/MarkReadCommand?" + rawQuery
			cr := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "POST", Path: path, Query: rawQuery,
				Headers: map[string]string{":path": path, "x-envoy-original-path": path, ":method": "POST"},
			}}}}
			r := readRequest(cr, &chk, false)
			if r.problem != "" || r.rawToken != "tokpartA.tokpartB.tokpartC" {
				t.Fatalf("token %q, problem %q", r.rawToken, r.problem)
			}
			if in := buildInput(r, nil, "untrusted_issuer", "id", false, everything).String(); strings.Contains(in, "tokpart") {
				t.Fatalf("the input holds the token: %s", in)
			}
			// Configured to show it, the policy sees it: the check above
			// looks where the token is.
			if in := buildInput(r, nil, "untrusted_issuer", "id", true, everything).String(); !strings.Contains(in, "tokpart") {
				t.Fatalf("show_credential_to_policy hid the token: %s", in)
			}
		})
	}
}

func TestCookieValueTakesTheFirstValueAndSeesEveryCookieOfTheName(t *testing.T) {
	cases := []struct {
		header, value string
		present       bool
	}{
		{"a=1; gg=x; b=2", "x", true},
		{"gg=x; gg=y", "x", true},
		{"gg; gg=y", "y", true}, // a bare name is present; the value is the first with '='
		{"a=1; gg", "", true},
		{"xgg=x; ggx=y; a=gg", "", false},
		{"", "", false},
	}
	for _, c := range cases {
		if v, present := cookieValue(c.header, "gg"); v != c.value || present != c.present {
			t.Errorf("cookieValue(%q) = %q, %v; want %q, %v", c.header, v, present, c.value, c.present)
		}
	}
}
