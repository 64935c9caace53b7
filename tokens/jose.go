package tokens

// The strict parser. It runs before any library sees a token, so that what
// the signature covers is exactly what the claims are read from, and every
// ambiguity an attacker could play on (RFC 8725 §2) is a rejection: two
// ways to spell the same bytes, two values for the same member, a header
// that brings its own key or asks for processing we do not do.

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"

	"github.com/guestgate/guestgate/strictjson"
)

// DefaultMaxTokenSize bounds a token when Config.MaxTokenSize is zero. Real
// tokens of every kind are well under 2 KiB.
const DefaultMaxTokenSize = 8192

// dateClaims are the NumericDate claims (RFC 7519 §2: "A JSON numeric value
// representing the number of seconds from 1970-01-01T00:00:00Z UTC"). A
// date written as a string is refused rather than guessed at.
var dateClaims = [...]string{"exp", "nbf", "iat", "auth_time"}

// compactJWS is a JWS in compact serialization that passed the strict
// checks: every segment decoded, the header an object that passed the
// header rules. The payload is still bytes (a JWS need not carry JSON).
type compactJWS struct {
	header       map[string]any
	payload      []byte
	signingInput string // ASCII(BASE64URL(header) || '.' || BASE64URL(payload)), RFC 7515 §5.2
	signature    []byte
	alg          string // header "alg", a string other than "none"
	kid          string // header "kid", "" when absent
	typ          string // header "typ", "" when absent
	hasTyp       bool
}

// parsedJWT is a compactJWS whose payload is a JSON object of claims.
type parsedJWT struct {
	compactJWS
	claims map[string]any
}

// parseJWT runs the strict parser over raw: the JWS layer (parseCompact),
// then the payload as a JWT claim set (RFC 7519 §7.2 step 10: "Verify that
// the resulting octet sequence is a UTF-8-encoded representation of a
// completely valid JSON object").
func parseJWT(raw string, maxSize int) (*parsedJWT, error) {
	c, err := parseCompact(raw, maxSize)
	if err != nil {
		return nil, err
	}
	claims, err := decodeObject(c.payload, "payload")
	if err != nil {
		return nil, err
	}
	for _, name := range dateClaims {
		if v, ok := claims[name]; ok {
			if _, ok := v.(json.Number); !ok {
				return nil, errorf(CodeBadClaims, "%s must be a JSON number", name)
			}
		}
	}
	return &parsedJWT{compactJWS: *c, claims: claims}, nil
}

// parseCompact checks the JWS layer of raw in this order: size, segment
// count, strict base64url of every segment, the header as a JSON object
// with unique members, then the header rules (checkHeader).
func parseCompact(raw string, maxSize int) (*compactJWS, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxTokenSize
	}
	if len(raw) > maxSize {
		return nil, errorf(CodeTooLarge, "token is %d bytes, the bound is %d", len(raw), maxSize)
	}
	if raw == "" {
		return nil, errorf(CodeMalformed, "empty token")
	}

	// RFC 7515 §7.1: the compact serialization is three base64url segments
	// joined by '.'. Five segments is a JWE (RFC 7516 §7.1): guestgate
	// accepts no encrypted token, so it is never handed to a JWE decoder.
	switch n := strings.Count(raw, ".") + 1; n {
	case 3:
	case 5:
		return nil, errorf(CodeMalformed, "five segments: an encrypted token (JWE) is not accepted")
	default:
		return nil, errorf(CodeMalformed, "%d segments, a signed token has three", n)
	}
	dot1 := strings.IndexByte(raw, '.')
	dot2 := dot1 + 1 + strings.IndexByte(raw[dot1+1:], '.')

	headerBytes, err := decodeSegment(raw[:dot1], "header")
	if err != nil {
		return nil, err
	}
	payload, err := decodeSegment(raw[dot1+1:dot2], "payload")
	if err != nil {
		return nil, err
	}
	signature, err := decodeSegment(raw[dot2+1:], "signature")
	if err != nil {
		return nil, err
	}
	header, err := decodeObject(headerBytes, "header")
	if err != nil {
		return nil, err
	}
	c := &compactJWS{
		header:       header,
		payload:      payload,
		signingInput: raw[:dot2],
		signature:    signature,
	}
	if err := checkHeader(c); err != nil {
		return nil, err
	}
	return c, nil
}

// checkHeader applies the header rules that hold for every issuer. The
// per-issuer rules (the allow-list, typ) come later, in verify.go.
func checkHeader(c *compactJWS) error {
	h := c.header

	// RFC 7515 §4.1.1: "This Header Parameter MUST be present".
	v, ok := h["alg"]
	if !ok {
		return errorf(CodeBadAlgorithm, "alg header missing")
	}
	alg, ok := v.(string)
	if !ok || alg == "" {
		return errorf(CodeBadAlgorithm, "alg header must be a non-empty string")
	}
	// RFC 8725 §3.1: libraries "MUST NOT" accept "none" unless asked; we
	// never are, in any spelling.
	if strings.EqualFold(alg, "none") {
		return errorf(CodeBadAlgorithm, "alg none is never accepted")
	}
	c.alg = alg

	// RFC 8725 §3.10 and RFC 7515 §4.1.2-4.1.6: a header that names or
	// embeds its own key lets the token choose who vouches for it. Keys come
	// from the issuer's configuration alone. x5t and x5t#S256 are accepted
	// and ignored: a thumbprint cannot bring a key, and some identity
	// providers send one beside kid; keys are never selected by it.
	for _, name := range [...]string{"jku", "jwk", "x5u", "x5c"} {
		if _, ok := h[name]; ok {
			return errorf(CodeBadHeader, "%s header not accepted: keys come from the issuer configuration", name)
		}
	}
	// RFC 7515 §4.1.11: a recipient that does not understand an extension
	// listed in "crit" MUST reject the JWS. We understand none.
	if _, ok := h["crit"]; ok {
		return errorf(CodeBadHeader, "crit header not accepted: no extension is supported")
	}
	// RFC 7797 §3: "b64" changes what the signature covers; only ever with crit.
	if _, ok := h["b64"]; ok {
		return errorf(CodeBadHeader, "b64 header not accepted")
	}
	// RFC 7519 §5.2 and RFC 8725 §2.8: "cty" announces a nested token. The
	// claims are this token's payload, never another token's.
	if _, ok := h["cty"]; ok {
		return errorf(CodeBadHeader, "cty header not accepted: nested tokens are not")
	}
	// RFC 7516 §4.1.2-4.1.3: members of an encrypted token.
	for _, name := range [...]string{"enc", "zip"} {
		if _, ok := h[name]; ok {
			return errorf(CodeBadHeader, "%s header not accepted: encrypted tokens (JWE) are not", name)
		}
	}
	if v, ok := h["kid"]; ok {
		kid, ok := v.(string)
		if !ok {
			return errorf(CodeBadHeader, "kid header must be a string")
		}
		c.kid = kid
	}
	if v, ok := h["typ"]; ok {
		typ, ok := v.(string)
		if !ok {
			return errorf(CodeBadHeader, "typ header must be a string")
		}
		c.typ, c.hasTyp = typ, true
	}
	return nil
}

// decodeSegment decodes one segment as strict, canonical, unpadded
// base64url (RFC 7515 §2: "with all trailing '=' characters omitted ... and
// without the inclusion of any line breaks, whitespace, or other additional
// characters").
func decodeSegment(seg, what string) ([]byte, error) {
	for i := 0; i < len(seg); i++ {
		switch c := seg[i]; {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		case c == '=':
			return nil, errorf(CodeMalformed, "%s is padded: base64url in a token has no '='", what)
		case c == '+' || c == '/':
			return nil, errorf(CodeMalformed, "%s uses the standard base64 alphabet, not base64url", what)
		default:
			return nil, errorf(CodeMalformed, "%s has a character outside base64url", what)
		}
	}
	// With the alphabet checked above (the decoder itself would skip CR and
	// LF), Strict decoding is canonical: it refuses a length of 4n+1 and
	// non-zero trailing bits (RFC 4648 §3.5), so only one text decodes to
	// these bytes. The fuzz test holds the decoder to that.
	b, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		return nil, errorf(CodeMalformed, "%s is not canonical base64url", what)
	}
	return b, nil
}

// decodeObject decodes data as one JSON object with no member repeated at
// any depth (RFC 7515 §5.2 step 4 and RFC 7519 §4: "MUST either reject ...
// with duplicate Header Parameter names" — we always reject), in UTF-8
// (RFC 7519 §7.2 step 10), nested at most strictjson.MaxDepth levels and
// nothing after it. Numbers stay json.Number so large integers are exact.
func decodeObject(data []byte, what string) (map[string]any, error) {
	obj, err := strictjson.DecodeObject(data)
	if err != nil {
		// The rule and the offset, never a member name: a detail holds
		// nothing of the token.
		var se *strictjson.Error
		if errors.As(err, &se) {
			return nil, errorf(CodeMalformed, "%s: %v at offset %d", what, se.Err, se.Offset)
		}
		return nil, errorf(CodeMalformed, "%s is not JSON", what)
	}
	return obj, nil
}
