package tokens

import (
	"time"

	"github.com/guestgate/guestgate/internal/memo"
)

// Kind is a kind of credential, one of the five below. The values are the
// ones the policy sees in input.token.kind.
type Kind string

const (
	KindXBSAnonymous    Kind = "xbs_anonymous"
	KindRegular         Kind = "regular"
	KindSecureAnonymous Kind = "secure_anonymous"
	KindGuest           Kind = "guest"
	KindAccess          Kind = "access"
)

// Token is a verified credential. A Verifier hands out the same *Token for
// every presentation of the same token while it is cached, so a Token and
// its Payload are read-only: never modify them.
type Token struct {
	Kind       Kind      // the kind the issuer entry and the claims agree on
	Subject    string    // "sub"
	Issuer     string    // "iss", exactly as configured
	Name       string    // "name", when present
	Email      string    // "email", when present
	ExpiresAt  time.Time // "exp"
	IssuerName string    // the name of the issuer entry that verified the token

	// The claims the sidecar itself reads, "" when absent (or, for a
	// claim a kind does not check, not a string).
	ID           string // "jti": the deny-list's token id
	Widget       string // "custom:wid"
	GuestIssuer  string // "guest_iss" of an access token
	GuestSubject string // "guest_sub" of an access token

	// Payload is the claim set exactly as the signature covers it (JSON).
	// A cached token keeps its claims in this one form, a few hundred
	// bytes, rather than as Go values (several KB); Claims decodes it.
	Payload []byte

	memo memo.Slot
}

// Claims decodes every claim of the payload. Numbers are json.Number, so
// large integers stay exact; objects are map[string]any, arrays []any. Each
// call decodes afresh (the caller owns the map); it is nil when the payload
// is not a JSON object, which a verified token's always is.
func (t *Token) Claims() map[string]any {
	claims, err := decodeObject(t.Payload, "payload")
	if err != nil {
		return nil
	}
	return claims
}

// Memo is where a caller keeps a form derived from the token (the policy
// input value), so that a cached token is converted once, not on every
// request. What is stored must be a pure function of the token: every
// later presentation of it sees it.
func (t *Token) Memo() *memo.Slot { return &t.memo }
