package ext_authz

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/guestgate/guestgate/internal/testsupport"
)

const formType = "application/x-www-form-urlencoded"

// randomText is text of runes a form must encode or may not: JSON's
// punctuation, the form's own delimiters, spaces, controls, letters beyond
// ASCII.
func randomText(r *rand.Rand, n int) string {
	alphabet := []rune(`aZ09-._~*!$'()+,:@/?{}[]"\&=;%# <>^|` + "`\t\n\x00é✓日\U0001F600")
	var b strings.Builder
	for range n {
		b.WriteRune(alphabet[r.IntN(len(alphabet))])
	}
	return b.String()
}

// browserEncode encodes a form as a browser does (WHATWG URL §5.2, the
// application/x-www-form-urlencoded serializer): every byte but ASCII
// letters, digits and "*-._" percent-encoded, a space as "+".
func browserEncode(pairs [][2]string) string {
	enc := func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("*-._", c) >= 0:
				b.WriteByte(c)
			case c == ' ':
				b.WriteByte('+')
			default:
				fmt.Fprintf(&b, "%%%02X", c)
			}
		}
		return b.String()
	}
	parts := make([]string, len(pairs))
	for i, p := range pairs {
		parts[i] = enc(p[0]) + "=" + enc(p[1])
	}
	return strings.Join(parts, "&")
}

// TestFormsAsEncodersWriteThemAreTaken: whatever a form encoder writes
// (a browser's, Go's url.Values.Encode) from any names and values is
// taken, and the policy reads the same names and values.
func TestFormsAsEncodersWriteThemAreTaken(t *testing.T) {
	bc := newBodyChecker(t)
	r := rand.New(rand.NewPCG(4, 2))
	for i := range 500 {
		var pairs [][2]string
		vs := url.Values{}
		for range 1 + r.IntN(4) {
			k, v := randomText(r, r.IntN(8)), randomText(r, r.IntN(12))
			pairs = append(pairs, [2]string{k, v})
			vs.Add(k, v)
		}
		for _, body := range []string{browserEncode(pairs), vs.Encode()} {
			if body == "" {
				continue
			}
			if !formShaped([]byte(body)) {
				t.Fatalf("form %d %q (of %q) refused", i, body, pairs)
			}
			r := readRequest(bodyRequestWith(formType, body), &bc.checker.compiled.Load().check, false)
			if r.problem != "" {
				t.Fatalf("form %d %q: %s (%s)", i, body, r.problem, r.detail)
			}
			if got, want := r.body.String(), valuesToAST(vs).String(); got != want {
				t.Fatalf("form %d %q: parsed %s, want %s", i, body, got, want)
			}
		}
	}
}

// TestJSONTextsSentAsFormsAreRefused: no JSON text is the shape of a form
// (an object, an array and a string start with "{", "[" or "\"", a
// number, true, false or null have no "="), so one sent as a form is
// bad_body, whatever its white space; a JSON text inside a form is
// percent-encoded and taken.
func TestJSONTextsSentAsFormsAreRefused(t *testing.T) {
	bc := newBodyChecker(t)
	r := rand.New(rand.NewPCG(9, 9))
	var docs []string
	for _, tb := range textBodies {
		if strings.Contains(tb.contentType, "json") {
			docs = append(docs, tb.body)
		}
	}
	var value func(depth int) any
	value = func(depth int) any {
		switch k := r.IntN(7); {
		case k == 0 && depth < 3:
			m := map[string]any{}
			for range r.IntN(4) {
				m[randomText(r, r.IntN(6))] = value(depth + 1)
			}
			return m
		case k == 1 && depth < 3:
			var l []any
			for range r.IntN(4) {
				l = append(l, value(depth+1))
			}
			return l
		case k == 2:
			return r.IntN(1000) - 500
		case k == 3:
			return r.Float64() * 1e6
		case k == 4:
			return r.IntN(2) == 0
		case k == 5:
			return nil
		}
		return randomText(r, r.IntN(10))
	}
	for range 500 {
		doc, err := json.Marshal(value(0))
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(doc))
	}
	for i, doc := range docs {
		for _, body := range []string{doc, " " + doc, "\n\t" + doc + "\n"} {
			if d := bodyChannels[i%2].send(t, bc, formType, body); d.Allowed || d.Reason != ReasonBadBody {
				t.Fatalf("%q as a form: allowed %v (%s), want bad_body", body, d.Allowed, d.Reason)
			}
		}
		wrapped := url.Values{"doc": {doc}}.Encode()
		if d := bodyChannels[0].send(t, bc, formType, wrapped); !d.Allowed {
			t.Fatalf("%q: a form holding a JSON text denied %s", wrapped, d.Reason)
		}
	}
}

// TestFormBodyShape: the shapes taken and refused, one by one.
func TestFormBodyShape(t *testing.T) {
	for _, c := range []struct {
		body string
		ok   bool
	}{
		{"a=1", true},
		{"a=", true},
		{"=v", true},
		{"a=b=c", true}, // every parser splits at the first "="
		{"q=a+b&r=%2F&s=%7b%22x%22%7d", true},
		{"sig=abc/+def==&t=1:2@3?4!$'()*,~", true},
		{`{"toPersonId":"guest-2"}`, false},
		{`["guest-2"]`, false},
		{`"toPersonId=guest-2"`, false},
		{"true", false},
		{"123", false},
		{"a", false},
		{"a=1&b", false},
		{"a=1&", false},
		{"&a=1", false},
		{"a=1&&b=2", false},
		{"a=1;b=2", false},
		{"a=b c", false},
		{"a=b\n", false},
		{" a=b", false},
		{"a=%4", false},
		{"a=%G0", false},
		{"a=<x>", false},
		{"a=x#y", false},
		{"a=é", false},
	} {
		if got := formShaped([]byte(c.body)); got != c.ok {
			t.Errorf("formShaped(%q) = %v, want %v", c.body, got, c.ok)
		}
	}
}

// TestJSONSentAsAFormToAGuestRouteIsRefused is the case reported: an
// access token, POST /v1/messages naming another guest in a JSON text
// declared as a form. The form parser made a field of noise of it and the
// shipped policy found no person field; now it is bad_body, while the same
// JSON declared as JSON is guest_to_guest.
func TestJSONSentAsAFormToAGuestRouteIsRefused(t *testing.T) {
	c, ws := shippedChecker(t, 0, 0)
	toks, err := ws.Mint(1)
	if err != nil {
		t.Fatal(err)
	}
	for ct, want := range map[string]string{formType: ReasonBadBody, "application/json": "guest_to_guest"} {
		req := testsupport.CheckRequest("POST", "/v1/messages", toks.Access, `{"toPersonId":"guest-2"}`)
		req.Attributes.Request.Http.Headers["content-type"] = ct
		if d := c.Decide(context.Background(), req); d.Allowed || d.Reason != want {
			t.Errorf("%s: allowed %v (%s), want %s", ct, d.Allowed, d.Reason, want)
		}
	}
}

func bodyRequestWith(contentType, body string) *authv3.CheckRequest {
	cr := bodyRequest(contentType)
	cr.Attributes.Request.Http.Body = body
	return cr
}
