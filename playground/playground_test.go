package playground

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testClient bounds every request a test sends.
var testClient = &http.Client{Timeout: 10 * time.Second}

func serve(t *testing.T, o Options) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(Prefix, Handler(o))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	resp, err := testClient.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestPageFilesAreServedUnderAStrictPolicy(t *testing.T) {
	srv := serve(t, Options{})
	cases := []struct{ path, contentType string }{
		{"/playground/", "text/html; charset=utf-8"},
		{"/playground/playground.js", "text/javascript; charset=utf-8"},
		{"/playground/playground.css", "text/css; charset=utf-8"},
		{"/playground/catalog.json", "application/json"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			resp, body := get(t, srv.URL+c.path)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != c.contentType || body == "" {
				t.Fatalf("%d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
			}
			want := map[string]string{
				"Content-Security-Policy": ContentSecurityPolicy,
				"X-Content-Type-Options":  "nosniff",
				"X-Frame-Options":         "DENY",
				"Referrer-Policy":         "no-referrer",
			}
			for k, v := range want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
	for _, directive := range []string{"script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "default-src 'none'"} {
		if !strings.Contains(ContentSecurityPolicy, directive) {
			t.Errorf("the policy lacks %s", directive)
		}
	}
	if strings.Contains(ContentSecurityPolicy, "unsafe") {
		t.Error("the policy allows something unsafe")
	}
}

func TestPageHasNoInlineScriptStyleOrExternalAsset(t *testing.T) {
	srv := serve(t, Options{})
	_, html := get(t, srv.URL+"/playground/")
	_, js := get(t, srv.URL+"/playground/playground.js")
	_, css := get(t, srv.URL+"/playground/playground.css")
	checks := []struct {
		name, doc string
		bad       *regexp.Regexp
	}{
		{"event handler attribute", html, regexp.MustCompile(`(?i)\son[a-z]+\s*=`)},
		{"style attribute or element", html, regexp.MustCompile(`(?i)\sstyle\s*=|<style`)},
		{"external asset in the page", html, regexp.MustCompile(`(?i)(src|href)\s*=\s*"(https?:)?//`)},
		{"external URL in the script", js, regexp.MustCompile(`https?://`)},
		{"external URL in the style", css, regexp.MustCompile(`https?://|@import|url\(`)},
		{"HTML written from data", js, regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function`)},
	}
	// Every script is a file: <script src="..."></script>, nothing inside.
	scripts := regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`).FindAllStringSubmatch(html, -1)
	if n := strings.Count(strings.ToLower(html), "<script"); n != len(scripts) || n == 0 {
		t.Errorf("%d <script tags, %d well-formed", n, len(scripts))
	}
	for _, m := range scripts {
		if !strings.Contains(m[1], `src="`) || strings.TrimSpace(m[2]) != "" {
			t.Errorf("inline script: %q", m[0])
		}
	}
	for _, c := range checks {
		if m := c.bad.FindString(c.doc); m != "" {
			t.Errorf("%s: %q", c.name, m)
		}
	}
}

func TestOnlyThePagesOwnPathsAndMethodsAnswer(t *testing.T) {
	srv := serve(t, Options{})
	resp, _ := get(t, srv.URL+"/playground/../config.go")
	if resp.StatusCode == http.StatusOK {
		t.Error("a path outside the page answered")
	}
	resp, _ = get(t, srv.URL+"/playground/static/index.html")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("an embedded file under another name answered %d", resp.StatusCode)
	}
	post, err := testClient.Post(srv.URL+"/playground/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST answered %d, want 405", post.StatusCode)
	}
}

func TestCatalogListsWhatItIsGivenAndNeverNull(t *testing.T) {
	srv := serve(t, Options{Catalog: func() Catalog {
		return Catalog{MintingEnabled: true, Providers: []Provider{{ID: "p1", Account: "a1", Role: "launchpad_user", Scope: "launchpads/x", Duration: "1h0m0s"}}, PolicyRevision: "rev1"}
	}})
	_, body := get(t, srv.URL+"/playground/catalog.json")
	var c map[string]any
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"widgets", "public_channels", "guest_issuers"} {
		if _, ok := c[k].([]any); !ok {
			t.Errorf("%s is %v, want a list", k, c[k])
		}
	}
	if c["policy_revision"] != "rev1" || c["minting_enabled"] != true || len(c["providers"].([]any)) != 1 {
		t.Errorf("catalog = %s", body)
	}
}

func TestExamplesRefuseWhatCannotGoIntoThem(t *testing.T) {
	srv := serve(t, Options{})
	ok := url.Values{"account_id": {"acc"}, "provider_id": {"prov"}, "client_id": {"cli"}}
	cases := []struct {
		name, key, value, mention string
	}{
		{"account with a slash", "account_id", "a/b", "account_id"},
		{"provider with a quote", "provider_id", "p'1", "provider_id"},
		{"client id missing", "client_id", "", "client_id"},
		{"client id with a space", "client_id", "a b", "client_id"},
		{"body not JSON", "body", "{", "body"},
		{"body not an object", "body", "[1]", "body"},
		{"body too large", "body", `{"a":"` + strings.Repeat("x", MaxExampleBody) + `"}`, "body"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := url.Values{}
			for k, v := range ok {
				q[k] = v
			}
			q.Set(c.key, c.value)
			resp, body := get(t, srv.URL+"/playground/examples.json?"+q.Encode())
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, c.mention) {
				t.Fatalf("%d %s, want 400 naming %s", resp.StatusCode, body, c.mention)
			}
		})
	}
	resp, body := get(t, srv.URL+"/playground/examples.json?"+ok.Encode())
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "BASE_URL='"+srv.URL+"'") {
		t.Fatalf("without a base URL the examples do not call the page's origin: %d %s", resp.StatusCode, body)
	}
}

func TestExamplesNeverCarryASecretAndSignTheNonce(t *testing.T) {
	ex, err := Examples(ExampleRequest{BaseURL: "http://127.0.0.1:8181", AccountID: "a", ProviderID: "p", ClientID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ex) != 4 {
		t.Fatalf("%d examples, want curl, Python, Go, Node.js", len(ex))
	}
	for _, e := range ex {
		if !strings.Contains(e.Code, SecretEnv) || !strings.Contains(e.Code, "X-Frame-Nonce") {
			t.Errorf("%s: does not read %s or send X-Frame-Nonce", e.Lang, SecretEnv)
		}
	}
	if !strings.Contains(ex[0].Code, "openssl dgst -sha256 -hmac") {
		t.Error("the curl example does not sign with openssl dgst -sha256 -hmac")
	}
}

// Every value must reach each language as itself: the literals are checked
// by the languages' own readers where they are installed.
func TestExampleLiteralsReadBackAsTheirValue(t *testing.T) {
	values := []string{``, `plain`, `O'Brien`, `say "hi"`, `back\slash`, `$(touch x) ${HOME} ` + "`id`", `{"a":"b"}`}
	for _, v := range values {
		if got, err := strconv.Unquote(stringLiteral(v)); err != nil || got != v {
			t.Errorf("Go reads %s as %q (%v), want %q", stringLiteral(v), got, err, v)
		}
		if sh, err := exec.LookPath("sh"); err == nil {
			out, err := exec.Command(sh, "-c", "printf '%s' "+shellQuote(v)).Output()
			if err != nil || string(out) != v {
				t.Errorf("sh reads %s as %q (%v), want %q", shellQuote(v), out, err, v)
			}
		}
		if py, err := exec.LookPath("python3"); err == nil {
			out, err := exec.Command(py, "-c", "import sys; sys.stdout.write("+stringLiteral(v)+")").Output()
			if err != nil || string(out) != v {
				t.Errorf("python3 reads %s as %q (%v), want %q", stringLiteral(v), out, err, v)
			}
		}
	}
	got, err := asciiJSON(`{"n": "Zoë 🦊"}`)
	if err != nil || got != `{"n":"Zo\u00eb \ud83e\udd8a"}` {
		t.Errorf("asciiJSON = %q, %v", got, err)
	}
	var back map[string]string
	if err := json.Unmarshal([]byte(got), &back); err != nil || back["n"] != "Zoë 🦊" {
		t.Errorf("asciiJSON changed the meaning: %v %v", back, err)
	}
}

// The page stands alone: it imports nothing of guestgate's (DESIGN.md's
// floors), so cmd hands it everything it shows.
func TestPackageImportsNothingOfOurs(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		parsed, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range parsed.Imports {
			if strings.Contains(imp.Path.Value, "github.com/guestgate/") {
				t.Errorf("%s imports %s", f, imp.Path.Value)
			}
		}
	}
}
