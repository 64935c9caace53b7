package tokens

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// MinGuestSecretBytes is the least length of a decoded guest secret: HS256
// wants a key as long as its hash (RFC 7518 §3.2).
const MinGuestSecretBytes = 32

// DecodeGuestSecret decodes a guest issuer's secret as it is handed out:
// base64 in the standard or the URL alphabet, padded or not. Anything else
// (whitespace, line breaks, a mix of both alphabets, bad padding, stray
// bits) is refused, as is a secret shorter than 32 bytes once decoded.
// Errors never hold the secret or any part of it.
func DecodeGuestSecret(b64 string) ([]byte, error) {
	if b64 == "" {
		return nil, errors.New("guest secret: empty")
	}
	std, urlSafe := false, false
	for i := 0; i < len(b64); i++ {
		switch c := b64[i]; {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '=':
		case c == '+' || c == '/':
			std = true
		case c == '-' || c == '_':
			urlSafe = true
		default:
			// Go's decoders skip CR and LF; a secret must be exactly what
			// was handed out, so nothing is skipped here.
			return nil, errors.New("guest secret: not base64 (a character outside the standard and URL alphabets)")
		}
	}
	if std && urlSafe {
		return nil, errors.New("guest secret: not base64 (mixes the standard and URL alphabets)")
	}
	enc := base64.StdEncoding
	if urlSafe {
		enc = base64.URLEncoding
	}
	if !strings.HasSuffix(b64, "=") {
		enc = enc.WithPadding(base64.NoPadding)
	}
	secret, err := enc.Strict().DecodeString(b64)
	if err != nil {
		return nil, errors.New("guest secret: not base64 (bad length, padding or trailing bits)")
	}
	if len(secret) < MinGuestSecretBytes {
		return nil, fmt.Errorf("guest secret: %d bytes once decoded; at least %d required", len(secret), MinGuestSecretBytes)
	}
	return secret, nil
}

// generationLabel keeps the generation's HMAC apart from any other use of
// the secret.
const generationLabel = "guestgate guest-secret generation v1"

// SecretGeneration returns a fingerprint of a guest secret that is safe to
// put in a token: base64url of the first 12 bytes of
// HMAC-SHA256(secret, "guestgate guest-secret generation v1"). It changes
// when the secret changes, so an access token carrying it is revoked by a
// rotation, and it reveals nothing of the secret.
func SecretGeneration(secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(generationLabel))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:12])
}

// guestIDEncoding is lower-case base32 without padding: person ids go in
// URLs and headers, and compare as plain strings.
var guestIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// GuestPersonIDPrefix starts every guest person id; regular person ids
// never do, which lets the policy tell guests apart.
const GuestPersonIDPrefix = "guest-"

// GuestPersonID returns the person id of the guest sub of the guest issuer
// issuerID: "guest-" and the lower-case, unpadded base32 of the first 16
// bytes of SHA-256(issuerID, 0x00, sub). The zero byte keeps ("ab", "c")
// and ("a", "bc") apart; issuer ids hold no zero byte (configuration
// refuses control characters), so the first zero byte always ends the
// issuer id and ids never collide across issuers.
func GuestPersonID(issuerID, sub string) string {
	h := sha256.New()
	h.Write([]byte(issuerID))
	h.Write([]byte{0})
	h.Write([]byte(sub))
	return GuestPersonIDPrefix + guestIDEncoding.EncodeToString(h.Sum(nil)[:16])
}

// MintGuest signs a guest token as a partner app's server does: HS256,
// header {"alg":"HS256","typ":"JWT"}, claims sub, name (when not empty),
// iss and exp (a JSON number of seconds). guestgate itself never needs it;
// tests, the mint tool and the playground do.
func MintGuest(secret []byte, iss, sub, name string, exp time.Time) (string, error) {
	if len(secret) < MinGuestSecretBytes {
		return "", fmt.Errorf("guest token: the secret is shorter than %d bytes", MinGuestSecretBytes)
	}
	if iss == "" {
		return "", errors.New("guest token: iss required")
	}
	if !isGuestSubject(sub) {
		return "", errors.New("guest token: sub must be letters, digits and hyphens")
	}
	if exp.Unix() <= 0 {
		return "", errors.New("guest token: exp required")
	}
	claims := map[string]any{"sub": sub, "iss": iss, "exp": exp.Unix()}
	if name != "" {
		claims["name"] = name
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("guest token: %w", err)
	}
	// jws.Sign adds "alg" to the headers it is given, so they are not shared.
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, "JWT"); err != nil {
		return "", fmt.Errorf("guest token: %w", err)
	}
	tok, err := jws.Sign(payload, jws.WithKey(jwa.HS256, secret, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("guest token: signing: %w", err)
	}
	return string(tok), nil
}
