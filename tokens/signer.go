package tokens

import (
	"bytes"
	"cmp"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Signer defaults and bounds.
const (
	DefaultSATTTL    = time.Hour     // a SAT whose provider names no duration
	DefaultAccessTTL = 6 * time.Hour // the login exchange's access token
	DefaultXBSTTL    = time.Hour     // an anonymous widget or link session

	// maxMetadataSize bounds a SAT's metadata claim once encoded, so the
	// token stays well under a verifier's size bound.
	maxMetadataSize = 2048
	// maxClaimText bounds the free-text claims (names, ids).
	maxClaimText = 256
)

// MintedKind configures one kind of token guestgate mints.
type MintedKind struct {
	// Issuer is the "iss" of the kind's tokens; the three kinds' differ, so a
	// verifier picks the right rules by "iss" alone. Required.
	Issuer string
	// Audience is the "aud" of the kind's tokens. Required.
	Audience string
	// Keys sign and verify the kind's tokens: Keys[0] signs, all are in
	// PublicKeys and the JWKS, so tokens of a retired key verify until they
	// expire. At least one; kids unique across all kinds.
	Keys []SigningKey
	// TTL is the lifetime of the kind's tokens. For SAT it is the default
	// when a mint names none. Zero: DefaultSATTTL, DefaultAccessTTL,
	// DefaultXBSTTL.
	TTL time.Duration
}

// SignerConfig configures a Signer.
type SignerConfig struct {
	SAT    MintedKind // secure_anonymous, typ sat+jwt
	Access MintedKind // access, typ at+jwt
	XBS    MintedKind // xbs_anonymous, Cognito-style ID tokens, no typ
	// AnonymousEmailDomain builds the synthetic e-mail of XBS tokens:
	// anonymous-<id>@anonymous.<domain>. Required.
	AnonymousEmailDomain string
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

// Issued is a token guestgate minted.
type Issued struct {
	Token     string         // the compact JWS
	Subject   string         // its "sub"
	ExpiresAt time.Time      // its "exp"
	Claims    map[string]any // its claims as signed (times are int64 seconds)
}

// SATClaims are what a secure anonymous token says beyond the standard
// claims.
type SATClaims struct {
	AccountID  string // required
	ProviderID string // required
	// Role is "launchpad_user" (the default when empty) or "administrator".
	Role string
	// Scope is the resource path the token reaches, e.g. "launchpads/lp-123":
	// segments of letters, digits and "-._~", separated by "/". Required.
	Scope string
	// TTL is the provider's token duration. Zero: the SAT kind's TTL.
	TTL                        time.Duration
	FirstName, LastName, Email string         // optional
	Metadata                   map[string]any // optional; a JSON object of at most 2 KiB
}

// AccessClaims are what an access token says about its guest.
type AccessClaims struct {
	GuestIssuer  string // the guest token's "iss"; required
	GuestSubject string // the guest token's "sub"; required
	Name         string // the guest's display name; optional
	Generation   string // SecretGeneration of the guest issuer's secret; required
}

// XBSClaims bind an anonymous session.
type XBSClaims struct {
	// Entry is "kite" (a widget session: WidgetID and ChannelID) or
	// "public_link" (a link into a public chat: ChannelID, no WidgetID).
	Entry     string
	WidgetID  string
	ChannelID string
}

// Access token scope and XBS entries.
const (
	AccessScope     = "messaging calling people"
	EntryKite       = "kite"
	EntryPublicLink = "public_link"
	// EntryUnbound mints the identity provider's own shape: a widget, no
	// custom:entry, no custom:channel_id (guestgate check and tests; the
	// issuer routes mint sessions only).
	EntryUnbound  = "unbound"
	RoleLaunchpad = "launchpad_user"
	RoleAdmin     = "administrator"
)

// Signer mints the tokens guestgate issues: secure anonymous, access and
// XBS anonymous. It is safe for concurrent use.
type Signer struct {
	sat, access, xbs kindSigner
	emailDomain      string
	now              func() time.Time
	jwks             []byte
}

type kindSigner struct {
	kind     Kind
	typ      string // the "typ" header; "" for none
	iss, aud string
	ttl      time.Duration
	keys     []signingKey // keys[0] signs
}

type signingKey struct {
	kid    string
	alg    jwa.SignatureAlgorithm
	raw    any     // the crypto private key; jws signs with it directly
	public jwk.Key // kid, alg and use set
}

// NewSigner checks cfg and builds a Signer. Errors name the kind and the
// field.
func NewSigner(cfg SignerConfig) (*Signer, error) {
	s := &Signer{now: cfg.Now}
	if s.now == nil {
		s.now = time.Now
	}
	if err := checkEmailDomain(cfg.AnonymousEmailDomain); err != nil {
		return nil, fmt.Errorf("signer: AnonymousEmailDomain: %w", err)
	}
	s.emailDomain = cfg.AnonymousEmailDomain

	issuers := make(map[string]string)
	kids := make(map[string]string)
	all := jwk.NewSet()
	for _, k := range []struct {
		name   string
		in     MintedKind
		out    *kindSigner
		kind   Kind
		typ    string
		defTTL time.Duration
	}{
		{"SAT", cfg.SAT, &s.sat, KindSecureAnonymous, "sat+jwt", DefaultSATTTL},
		{"Access", cfg.Access, &s.access, KindAccess, "at+jwt", DefaultAccessTTL},
		{"XBS", cfg.XBS, &s.xbs, KindXBSAnonymous, "", DefaultXBSTTL},
	} {
		fail := func(field, format string, args ...any) error {
			return fmt.Errorf("signer: %s.%s: %s", k.name, field, fmt.Sprintf(format, args...))
		}
		if k.in.Issuer == "" {
			return nil, fail("Issuer", "required")
		}
		if other, dup := issuers[k.in.Issuer]; dup {
			return nil, fail("Issuer", "%q is %s's issuer too; each kind needs its own", k.in.Issuer, other)
		}
		issuers[k.in.Issuer] = k.name
		if k.in.Audience == "" {
			return nil, fail("Audience", "required")
		}
		if k.in.TTL < 0 {
			return nil, fail("TTL", "must not be negative")
		}
		if len(k.in.Keys) == 0 {
			return nil, fail("Keys", "at least one signing key required")
		}
		*k.out = kindSigner{kind: k.kind, typ: k.typ, iss: k.in.Issuer, aud: k.in.Audience, ttl: cmp.Or(k.in.TTL, k.defTTL)}
		for i, sk := range k.in.Keys {
			field := fmt.Sprintf("Keys[%d]", i)
			if other, dup := kids[sk.ID]; dup {
				return nil, fail(field, "kid %q is used by %s too; kids must be unique", sk.ID, other)
			}
			kids[sk.ID] = k.name
			key, err := prepareSigningKey(sk)
			if err != nil {
				return nil, fail(field, "%v", err)
			}
			k.out.keys = append(k.out.keys, key)
			if err := all.AddKey(key.public); err != nil {
				return nil, fail(field, "%v", err)
			}
		}
	}
	jwks, err := json.Marshal(all)
	if err != nil {
		return nil, fmt.Errorf("signer: JWKS: %w", err)
	}
	s.jwks = jwks
	return s, nil
}

// prepareSigningKey checks a SigningKey, built by LoadSigningKey or by
// hand, and derives what signing needs.
func prepareSigningKey(sk SigningKey) (signingKey, error) {
	if sk.Private == nil {
		return signingKey{}, errors.New("no private key")
	}
	if err := checkKID(sk.ID); err != nil {
		return signingKey{}, err
	}
	if kid := sk.Private.KeyID(); kid != "" && kid != sk.ID {
		return signingKey{}, fmt.Errorf("the ID %q differs from the key's kid %q", sk.ID, kid)
	}
	if alg := sk.Private.Algorithm().String(); alg != "" && alg != sk.Algorithm {
		return signingKey{}, fmt.Errorf("the Algorithm %q differs from the key's alg %q", sk.Algorithm, alg)
	}
	var raw any
	if err := sk.Private.Raw(&raw); err != nil {
		return signingKey{}, fmt.Errorf("unusable key: %v", err)
	}
	pub, err := checkSigningKey(raw, sk.Algorithm)
	if err != nil {
		return signingKey{}, err
	}
	public, err := jwk.FromRaw(pub)
	if err != nil {
		return signingKey{}, err
	}
	alg := jwa.SignatureAlgorithm(sk.Algorithm)
	for _, kv := range [...]struct {
		k string
		v any
	}{{jwk.KeyIDKey, sk.ID}, {jwk.AlgorithmKey, alg}, {jwk.KeyUsageKey, jwk.ForSignature}} {
		if err := public.Set(kv.k, kv.v); err != nil {
			return signingKey{}, err
		}
	}
	if k, ok := raw.(*ecdsa.PrivateKey); ok {
		raw = lowSSigner{k} // the only form the verifier takes
	}
	return signingKey{kid: sk.ID, alg: alg, raw: raw, public: public}, nil
}

// PublicKeys returns the public keys that verify tokens of kind
// (KindSecureAnonymous, KindAccess or KindXBSAnonymous), each with kid, alg
// and use "sig": Verifier's Issuer.PublicKeys. Any other kind: an empty
// set. The set is the caller's own.
func (s *Signer) PublicKeys(kind Kind) jwk.Set {
	set := jwk.NewSet()
	ks := s.kind(kind)
	if ks == nil {
		return set
	}
	for _, k := range ks.keys {
		if c, err := k.public.Clone(); err == nil {
			_ = set.AddKey(c)
		}
	}
	return set
}

// JWKS returns the JSON Web Key Set of every public key of every kind, for
// /.well-known/jwks.json. It never holds a private part: the keys in it are
// built from the public halves alone.
func (s *Signer) JWKS() []byte {
	return bytes.Clone(s.jwks)
}

func (s *Signer) kind(kind Kind) *kindSigner {
	switch kind {
	case KindSecureAnonymous:
		return &s.sat
	case KindAccess:
		return &s.access
	case KindXBSAnonymous:
		return &s.xbs
	}
	return nil
}

// MintSAT mints a secure anonymous token: header typ "sat+jwt"; claims iss,
// aud, sub (a fresh random UUID: each token is its own anonymous person),
// iat, exp, jti, role, scope, account_id, provider_id and, when set,
// first_name, last_name, email and metadata.
func (s *Signer) MintSAT(c SATClaims) (Issued, error) {
	fail := func(format string, args ...any) (Issued, error) {
		return Issued{}, fmt.Errorf("secure anonymous token: "+format, args...) // %w keeps a *ClaimError
	}
	if err := checkText("account_id", c.AccountID, true); err != nil {
		return fail("%w", err)
	}
	if err := checkText("provider_id", c.ProviderID, true); err != nil {
		return fail("%w", err)
	}
	role := cmp.Or(c.Role, RoleLaunchpad)
	if role != RoleLaunchpad && role != RoleAdmin {
		return fail("role must be %q or %q", RoleLaunchpad, RoleAdmin)
	}
	if err := checkScope(c.Scope); err != nil {
		return fail("%w", err)
	}
	if c.TTL < 0 {
		return fail("TTL must not be negative")
	}
	for _, f := range [...]struct{ name, v string }{{"first_name", c.FirstName}, {"last_name", c.LastName}} {
		if err := checkText(f.name, f.v, false); err != nil {
			return fail("%w", err)
		}
	}
	if c.Email != "" {
		if err := checkEmail(c.Email); err != nil {
			return fail("%w", err)
		}
	}
	sub, err := newUUID()
	if err != nil {
		return fail("%w", err)
	}
	jti, err := newUUID()
	if err != nil {
		return fail("%w", err)
	}
	now := s.now()
	exp := now.Add(cmp.Or(c.TTL, s.sat.ttl))
	claims := map[string]any{
		"iss": s.sat.iss, "aud": s.sat.aud, "sub": sub, "jti": jti,
		"iat": now.Unix(), "exp": exp.Unix(),
		"role": role, "scope": c.Scope, "account_id": c.AccountID, "provider_id": c.ProviderID,
	}
	for _, f := range [...]struct{ name, v string }{{"first_name", c.FirstName}, {"last_name", c.LastName}, {"email", c.Email}} {
		if f.v != "" {
			claims[f.name] = f.v
		}
	}
	if len(c.Metadata) > 0 {
		// Through JSON and back: the claim is exactly what the token holds,
		// and a value that is not JSON is refused here, not half-encoded.
		data, err := json.Marshal(c.Metadata)
		if err != nil {
			return fail("%w", claimErrorf("metadata", "metadata is not JSON: %v", err))
		}
		if len(data) > maxMetadataSize {
			return fail("%w", claimErrorf("metadata", "metadata is larger than %d bytes as JSON", maxMetadataSize))
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			return fail("metadata: %v", err)
		}
		claims["metadata"] = m
	}
	return s.mint(&s.sat, claims, sub, exp)
}

// MintAccess mints the access token of the login exchange: header typ
// "at+jwt"; claims iss, aud, sub (the guest's person id), name (when set),
// scope, guest_iss, guest_sub, gen, iat, exp, jti.
func (s *Signer) MintAccess(c AccessClaims) (Issued, error) {
	fail := func(format string, args ...any) (Issued, error) {
		return Issued{}, fmt.Errorf("access token: "+format, args...) // %w keeps a *ClaimError
	}
	if err := checkText("guest_iss", c.GuestIssuer, true); err != nil {
		return fail("%w", err)
	}
	if !isGuestSubject(c.GuestSubject) || len(c.GuestSubject) > maxClaimText {
		return fail("%w", claimErrorf("guest_sub", "guest_sub must be at most %d letters, digits and hyphens", maxClaimText))
	}
	if err := checkText("gen", c.Generation, true); err != nil {
		return fail("%w", err)
	}
	if err := checkText("name", c.Name, false); err != nil {
		return fail("%w", err)
	}
	jti, err := newUUID()
	if err != nil {
		return fail("%w", err)
	}
	sub := GuestPersonID(c.GuestIssuer, c.GuestSubject)
	now := s.now()
	exp := now.Add(s.access.ttl)
	claims := map[string]any{
		"iss": s.access.iss, "aud": s.access.aud, "sub": sub, "jti": jti,
		"iat": now.Unix(), "exp": exp.Unix(),
		"scope": AccessScope, "guest_iss": c.GuestIssuer, "guest_sub": c.GuestSubject, "gen": c.Generation,
	}
	if c.Name != "" {
		claims["name"] = c.Name
	}
	return s.mint(&s.access, claims, sub, exp)
}

// MintXBSAnonymous mints an anonymous session's Cognito-style ID token (no
// typ header): sub, custom:wid (kite only), custom:authorization_type
// "XBS_ANONYMOUS", token_use "id", aud, iss, name "guest", a synthetic
// email (the same for every visitor of the widget or link: never an
// identity), email_verified false, auth_time, iat, exp, jti, origin_jti,
// event_id, cognito:username (= sub), custom:entry and custom:channel_id.
func (s *Signer) MintXBSAnonymous(c XBSClaims) (Issued, error) {
	fail := func(format string, args ...any) (Issued, error) {
		return Issued{}, fmt.Errorf("anonymous token: "+format, args...)
	}
	var emailID string
	switch c.Entry {
	case EntryKite:
		if c.WidgetID == "" || c.ChannelID == "" {
			return fail("a kite session needs a widget id and a channel id")
		}
		emailID = c.WidgetID
	case EntryPublicLink:
		if c.ChannelID == "" {
			return fail("a public link needs a channel id")
		}
		if c.WidgetID != "" {
			return fail("a public link has no widget id")
		}
		emailID = c.ChannelID
	case EntryUnbound:
		if c.WidgetID == "" || c.ChannelID != "" {
			return fail("an unbound token needs a widget id and no channel id")
		}
		emailID = c.WidgetID
	default:
		return fail("entry must be %q, %q or %q", EntryKite, EntryPublicLink, EntryUnbound)
	}
	for _, f := range [...]struct{ claim, name, v string }{{"custom:wid", "widget id", c.WidgetID}, {"custom:channel_id", "channel id", c.ChannelID}} {
		if f.v != "" && !isResourceID(f.v) {
			return fail("%w", claimErrorf(f.claim, "%s must be 1 to 128 letters, digits and \"-._\"", f.name))
		}
	}
	var ids [4]string
	for i := range ids {
		id, err := newUUID()
		if err != nil {
			return fail("%w", err)
		}
		ids[i] = id
	}
	sub := ids[0]
	now := s.now()
	exp := now.Add(s.xbs.ttl)
	claims := map[string]any{
		"sub": sub, "cognito:username": sub,
		"custom:authorization_type": xbsAnonymousType, "token_use": "id",
		"aud": s.xbs.aud, "iss": s.xbs.iss,
		"name": "guest", "email": "anonymous-" + strings.ToLower(emailID) + "@anonymous." + s.emailDomain, "email_verified": false,
		"auth_time": now.Unix(), "iat": now.Unix(), "exp": exp.Unix(),
		"jti": ids[1], "origin_jti": ids[2], "event_id": ids[3],
	}
	if c.Entry != EntryUnbound {
		claims["custom:entry"], claims["custom:channel_id"] = c.Entry, c.ChannelID
	}
	if c.WidgetID != "" {
		claims["custom:wid"] = c.WidgetID
	}
	return s.mint(&s.xbs, claims, sub, exp)
}

// mint signs claims with the kind's current key.
func (s *Signer) mint(ks *kindSigner, claims map[string]any, sub string, exp time.Time) (Issued, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return Issued{}, fmt.Errorf("%s token: claims: %w", ks.kind, err)
	}
	key := &ks.keys[0]
	// jws.Sign sets "alg" in the headers it is given: a fresh set per token.
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.KeyIDKey, key.kid); err != nil {
		return Issued{}, err
	}
	if ks.typ != "" {
		if err := hdr.Set(jws.TypeKey, ks.typ); err != nil {
			return Issued{}, err
		}
	}
	tok, err := jws.Sign(payload, jws.WithKey(key.alg, key.raw, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return Issued{}, fmt.Errorf("%s token: signing: %w", ks.kind, err)
	}
	if len(tok) > DefaultMaxTokenSize {
		return Issued{}, fmt.Errorf("%s token: %d bytes, over the verifier's default bound of %d", ks.kind, len(tok), DefaultMaxTokenSize)
	}
	return Issued{Token: string(tok), Subject: sub, ExpiresAt: time.Unix(exp.Unix(), 0), Claims: claims}, nil
}

func newUUID() (string, error) {
	id, err := uuid.NewRandom() // version 4, from crypto/rand
	if err != nil {
		return "", fmt.Errorf("random id: %w", err)
	}
	return id.String(), nil
}

// checkText takes free-text claims: valid UTF-8, no control characters,
// at most maxClaimText bytes. It refuses with a *ClaimError.
func checkText(name, v string, required bool) error {
	if v == "" {
		if required {
			return claimErrorf(name, "%s required", name)
		}
		return nil
	}
	if len(v) > maxClaimText {
		return claimErrorf(name, "%s is longer than %d bytes", name, maxClaimText)
	}
	if !utf8.ValidString(v) {
		return claimErrorf(name, "%s is not valid UTF-8", name)
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return claimErrorf(name, "%s holds a control character", name)
		}
	}
	return nil
}

// checkScope takes a resource path: segments of unreserved characters
// (RFC 3986 §2.3), none "." or "..", separated by single slashes. The
// policy lets the token reach /v1/<scope>/..., so the scope must not be
// able to climb out of itself or be empty.
func checkScope(scope string) error {
	if scope == "" {
		return claimErrorf("scope", "scope required")
	}
	if len(scope) > maxClaimText {
		return claimErrorf("scope", "scope is longer than %d bytes", maxClaimText)
	}
	for _, seg := range strings.Split(scope, "/") {
		if seg == "" || seg == "." || seg == ".." || !isUnreserved(seg) {
			return claimErrorf("scope", `scope must be a resource path such as "launchpads/lp-123"`)
		}
	}
	return nil
}

func isUnreserved(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0) {
			return false
		}
	}
	return true
}

// isResourceID takes widget and channel ids: they go in a synthetic e-mail
// address and in URLs.
func isResourceID(s string) bool {
	return s != "" && len(s) <= 128 && isUnreserved(s) && !strings.Contains(s, "~")
}

func checkEmail(e string) error {
	if err := checkText("email", e, true); err != nil {
		return err
	}
	at := strings.LastIndexByte(e, '@')
	if at <= 0 || at == len(e)-1 || strings.ContainsAny(e, " <>,;\"") {
		return claimErrorf("email", "email is not an e-mail address")
	}
	return nil
}

// checkEmailDomain takes a DNS name in lower case.
func checkEmailDomain(d string) error {
	if d == "" {
		return errors.New("required")
	}
	if len(d) > 253 {
		return errors.New("longer than 253 characters")
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q is not a domain name", d)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("%q is not a lower-case domain name", d)
			}
		}
	}
	return nil
}
