package playground

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"text/template"
)

// The examples are the one source of truth for what the page shows under
// the Mint tab and for what the tests run: the page asks examples.json, which
// renders these templates.
//
//go:embed examples/*.tmpl
var exampleFiles embed.FS

// SecretEnv is the environment variable every example reads the client
// secret from.
const SecretEnv = "GUESTGATE_CLIENT_SECRET"

// MaxExampleBody bounds the optional-fields body an example carries.
const MaxExampleBody = 16 << 10

// ExampleRequest is the SAT request the examples make. None of it is
// secret: the secret stays in the environment of whoever runs them.
type ExampleRequest struct {
	BaseURL    string // scheme://host[:port] of the issuer routes
	AccountID  string
	ProviderID string
	ClientID   string
	Body       string // a JSON object of the optional fields, or ""
}

// Example is one language's code.
type Example struct {
	Lang  string `json:"lang"`  // curl, python, go, node
	Label string `json:"label"` // what the page's tab says
	File  string `json:"file"`  // a file name to save it as
	Code  string `json:"code"`
}

var exampleLangs = []struct{ lang, label, file, tmpl string }{
	{"curl", "curl", "mint.sh", "curl.sh.tmpl"},
	{"python", "Python", "mint.py", "python.py.tmpl"},
	{"go", "Go", "main.go", "go.go.tmpl"},
	{"node", "Node.js", "mint.mjs", "node.mjs.tmpl"},
}

var exampleTemplates = template.Must(template.New("").Funcs(template.FuncMap{
	"sh":  shellQuote,
	"str": stringLiteral,
}).ParseFS(exampleFiles, "examples/*.tmpl"))

// Examples renders the SAT request in every language, or says which field
// cannot go into one.
func Examples(r ExampleRequest) ([]Example, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	if r.Body != "" {
		var err error
		if r.Body, err = asciiJSON(r.Body); err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
	}
	out := make([]Example, 0, len(exampleLangs))
	for _, l := range exampleLangs {
		var b bytes.Buffer
		if err := exampleTemplates.ExecuteTemplate(&b, l.tmpl, r); err != nil {
			return nil, fmt.Errorf("example %s: %w", l.lang, err)
		}
		out = append(out, Example{Lang: l.lang, Label: l.label, File: l.file, Code: b.String()})
	}
	return out, nil
}

func (r ExampleRequest) check() error {
	u, err := url.Parse(r.BaseURL)
	if err != nil || strings.IndexFunc(r.BaseURL, func(c rune) bool { return c <= 0x20 || c >= 0x7f }) >= 0 || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("base_url: %q is not scheme://host[:port]", r.BaseURL)
	}
	for _, f := range []struct{ key, v string }{{"account_id", r.AccountID}, {"provider_id", r.ProviderID}, {"client_id", r.ClientID}} {
		if f.v == "" {
			return fmt.Errorf("%s: required", f.key)
		}
		if len(f.v) > 128 || strings.Trim(f.v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") != "" {
			return fmt.Errorf("%s: only letters, digits and - . _ ~ (at most 128)", f.key)
		}
	}
	if r.Body != "" {
		if len(r.Body) > MaxExampleBody {
			return fmt.Errorf("body: larger than %d bytes", MaxExampleBody)
		}
		var obj map[string]any
		if err := json.Unmarshal([]byte(r.Body), &obj); err != nil || obj == nil {
			return errors.New("body: not a JSON object")
		}
	}
	return nil
}

// shellQuote single-quotes s for a POSIX shell: nothing inside expands.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// stringLiteral is a double-quoted string literal that Python, Go and
// JavaScript all read as s. check has made every field printable ASCII
// (the body's other characters are JSON \u escapes), so \" and \\ are
// the only escapes the three languages must agree on.
func stringLiteral(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// asciiJSON compacts a JSON document and writes every character outside
// printable ASCII as a JSON \u escape (a surrogate pair above U+FFFF), so
// the document means the same and is plain ASCII.
func asciiJSON(doc string) (string, error) {
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(doc)); err != nil {
		return "", err
	}
	var b strings.Builder
	for _, r := range compact.String() {
		switch {
		case r >= 0x20 && r < 0x7f:
			b.WriteRune(r)
		case r > 0xffff:
			r -= 0x10000
			fmt.Fprintf(&b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String(), nil
}
