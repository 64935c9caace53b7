package tokens

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/guestgate/guestgate/strictjson"
)

// vfCompact joins the base64url of header and payload with sig verbatim.
func vfCompact(header, payload, sig string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + sig
}

// TestStrictParserRules covers the parser's own rules, below Verify: each
// row is a token and the code parseJWT answers ("" for accepted).
func TestStrictParserRules(t *testing.T) {
	const h = `{"alg":"HS256","typ":"JWT"}`
	const p = `{"sub":"a","exp":1}`
	deep := strings.Repeat(`{"a":`, strictjson.MaxDepth+1) + "1" + strings.Repeat("}", strictjson.MaxDepth+1)
	shallow := strings.Repeat(`{"a":`, strictjson.MaxDepth-1) + "1" + strings.Repeat("}", strictjson.MaxDepth-1)
	tests := []struct {
		name   string
		raw    string
		want   string
		detail string // a substring of the detail, when it matters
	}{
		{"well formed", vfCompact(h, p, "c2ln"), "", ""},
		{"x5t is a harmless hint", vfCompact(`{"alg":"RS256","kid":"k","x5t":"abc","x5t#S256":"def"}`, p, "c2ln"), "", ""},
		{"whitespace inside the JSON", vfCompact("{ \"alg\" : \"HS256\"\n}", " {\"sub\": \"a\"} ", "c2ln"), "", ""},
		{"nesting at the bound", vfCompact(h, `{"x":`+shallow+`}`, "c2ln"), "", ""},
		{"nesting past the bound", vfCompact(h, `{"x":`+deep+`}`, "c2ln"), CodeMalformed, "nested too deep"},
		{"five segments", "a.b.c.d.e", CodeMalformed, "JWE"},
		{"six segments", "a.b.c.d.e.f", CodeMalformed, "6 segments"},
		{"segment of 4n+1 characters", vfCompact(h, p, "c2lnA"), CodeMalformed, "canonical"},
		{"payload with non-zero trailing bits", strings.Split(vfCompact(h, p, ""), ".")[0] + "." + vfNonCanonical(t, strings.Split(vfCompact(h, p, ""), ".")[1]) + ".", CodeMalformed, "canonical"},
		{"carriage return", vfCompact(h, p, "c2\rln"), CodeMalformed, "outside base64url"},
		{"tab", vfCompact(h, p, "c2\tln"), CodeMalformed, "outside base64url"},
		{"percent-encoded", vfCompact(h, p, "c2%3Dln"), CodeMalformed, "outside base64url"},
		{"byte-order mark", vfCompact("\ufeff"+h, p, ""), CodeMalformed, "not JSON"},
		{"two objects in the header", vfCompact(h+h, p, ""), CodeMalformed, "not JSON"},
		{"header null", vfCompact("null", p, ""), CodeMalformed, "not a JSON object"},
		{"header empty", vfCompact("", p, ""), CodeMalformed, "not JSON"},
		{"duplicate deep in the header", vfCompact(`{"alg":"HS256","x":[{"y":1,"y":1}]}`, p, ""), CodeMalformed, "duplicate"},
		{"alg an object", vfCompact(`{"alg":{"name":"HS256"}}`, p, ""), CodeBadAlgorithm, ""},
		{"alg NONE", vfCompact(`{"alg":"NONE"}`, p, ""), CodeBadAlgorithm, "none"},
		{"typ a number", vfCompact(`{"alg":"HS256","typ":1}`, p, ""), CodeBadHeader, "typ"},
		{"iat a string", vfCompact(h, `{"iat":"now"}`, ""), CodeBadClaims, "iat must be a JSON number"},
		{"auth_time a bool", vfCompact(h, `{"auth_time":true}`, ""), CodeBadClaims, "auth_time must be a JSON number"},
		{"nbf an array", vfCompact(h, `{"nbf":[1]}`, ""), CodeBadClaims, "nbf must be a JSON number"},
		{"header rules before the payload", vfCompact(`{"alg":"HS256","jku":"x"}`, `not json`, ""), CodeBadHeader, "jku"},
		{"large but under the bound", vfCompact(h, `{"p":"`+strings.Repeat("x", 2000)+`"}`, "c2ln"), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseJWT(tt.raw, 4096)
			if got := CodeOf(err); got != tt.want {
				t.Fatalf("code %q (%v), want %q", got, err, tt.want)
			}
			if tt.detail != "" && !strings.Contains(err.Error(), tt.detail) {
				t.Fatalf("error %q does not say %q", err, tt.detail)
			}
		})
	}
	if _, err := parseJWT(strings.Repeat("a", 4097), 4096); CodeOf(err) != CodeTooLarge {
		t.Fatalf("over the bound: %v", err)
	}
}

// TestSignatureLayerAcceptsNonJSONPayloads: a JWS need not carry JSON
// (RFC 7515); only the JWT layer asks for a claim set.
func TestSignatureLayerAcceptsNonJSONPayloads(t *testing.T) {
	raw := vfCompact(`{"alg":"HS256"}`, "It's a dangerous business, Frodo", "")
	if _, err := parseCompact(raw, 0); err != nil {
		t.Fatalf("parseCompact: %v", err)
	}
	if _, err := parseJWT(raw, 0); CodeOf(err) != CodeMalformed {
		t.Fatalf("parseJWT: %v, want malformed", err)
	}
}
