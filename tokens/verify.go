package tokens

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// Defaults for the zero values of Config and Issuer.
const (
	DefaultLeeway           = 60 * time.Second
	DefaultCacheSize        = 10000
	DefaultGuestMaxLifetime = 24 * time.Hour
)

// Regular opts an xbs_anonymous issuer entry in to regular (signed-in) ID
// tokens from the same user pool.
type Regular struct {
	// AuthorizationTypes lists the custom:authorization_type values taken as
	// regular tokens. A token without the claim is always regular; with an
	// empty list, only such tokens are.
	AuthorizationTypes []string
}

// Issuer is one trusted issuer. Its entry alone decides how a token whose
// "iss" is Issuer is verified.
type Issuer struct {
	// Name labels the entry in errors, logs and Token.IssuerName. Empty:
	// "issuers[<index>]".
	Name string
	// Kind is KindXBSAnonymous, KindGuest, KindSecureAnonymous or KindAccess.
	// Regular tokens ride on an xbs_anonymous entry (see Regular).
	Kind Kind
	// Issuer is the exact "iss" of the entry's tokens; unique across entries.
	Issuer string
	// Audiences: for xbs_anonymous the app client ids, for secure_anonymous
	// and access their audience. Required for those kinds; a token's "aud"
	// must hold one of them. Guest tokens carry no audience: leave it empty.
	Audiences []string
	// Algorithms is the allow-list of "alg" values. Empty: RS256 for
	// xbs_anonymous, HS256 for guest (the only one allowed), ES256 for
	// secure_anonymous and access. Asymmetric kinds never take HS*.
	Algorithms []string
	// Keys is a JWKS (file, inline or URL) the entry's tokens are verified
	// with. Set Keys or PublicKeys (not both) on every kind but guest.
	Keys KeySource
	// PublicKeys is a fixed key set, such as Signer.PublicKeys for the kinds
	// guestgate mints.
	PublicKeys jwk.Set
	// Regular, on an xbs_anonymous entry, takes regular ID tokens too. Nil:
	// a token that is not XBS_ANONYMOUS is bad_claims.
	Regular *Regular
	// GuestSecret is a guest issuer's secret, base64 as handed out (see
	// DecodeGuestSecret). Required for guest, refused for other kinds.
	GuestSecret string
	// MaxLifetime bounds how far ahead of now a guest token's "exp" may be.
	// Zero: DefaultGuestMaxLifetime. Guest only.
	MaxLifetime time.Duration
}

// Hooks are called, when set, on the events metrics count. They must be
// quick and safe for concurrent use.
type Hooks struct {
	OnCacheHit  func()
	OnCacheMiss func()
	OnJWKSFetch func(url string, err error)
}

// Config configures a Verifier.
type Config struct {
	// Issuers are the trusted issuers. Empty: every token is untrusted_issuer.
	Issuers []Issuer
	// MaxTokenSize bounds a token in bytes. Zero: DefaultMaxTokenSize.
	MaxTokenSize int
	// Leeway is the clock skew allowed on exp, nbf and iat. Zero:
	// DefaultLeeway.
	Leeway time.Duration
	// CacheSize bounds the verified-token cache in entries. Zero:
	// DefaultCacheSize; negative: no cache.
	CacheSize int
	// HTTPClient fetches JWKS URLs. Nil: the key set's default client.
	HTTPClient *http.Client
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
	// Hooks report cache and JWKS events.
	Hooks Hooks
}

// Verifier verifies tokens of every configured issuer. It is safe for
// concurrent use. Build a new one when the configuration changes: its cache
// and key sets belong to it.
type Verifier struct {
	byIss    map[string]*issuerEntry
	guestGen map[string]string // guest issuer "iss" -> SecretGeneration of its secret
	keySets  []*KeySet
	maxSize  int
	leeway   time.Duration
	now      func() time.Time
	hooks    Hooks
	cache    *tokenCache // nil: caching disabled
	close    sync.Once

	// sigChecks counts signature verifications; tests use it to see that a
	// cache hit does no signature work.
	sigChecks atomic.Uint64
}

// issuerEntry is an Issuer after validation, with defaults applied.
type issuerEntry struct {
	name         string
	kind         Kind
	iss          string
	audiences    []string
	algs         map[string]jwa.SignatureAlgorithm
	keys         *KeySet // nil for guest
	regular      bool
	regularTypes map[string]bool
	secret       []byte // guest: the decoded secret, the HMAC key
	maxLifetime  time.Duration
}

// New validates cfg and builds a Verifier. Every error names the issuer
// entry and the field at fault. Key sets with a URL start fetching under ctx.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if cfg.MaxTokenSize < 0 {
		return nil, errors.New("tokens: MaxTokenSize: must not be negative")
	}
	if cfg.Leeway < 0 {
		return nil, errors.New("tokens: Leeway: must not be negative")
	}
	v := &Verifier{
		byIss:    make(map[string]*issuerEntry, len(cfg.Issuers)),
		guestGen: make(map[string]string),
		maxSize:  cmp.Or(cfg.MaxTokenSize, DefaultMaxTokenSize),
		leeway:   cmp.Or(cfg.Leeway, DefaultLeeway),
		now:      cfg.Now,
		hooks:    cfg.Hooks,
	}
	if v.now == nil {
		v.now = time.Now
	}
	for i, in := range cfg.Issuers {
		e, err := newIssuerEntry(ctx, i, in, cfg)
		if err != nil {
			v.Close()
			return nil, err
		}
		if e.keys != nil {
			v.keySets = append(v.keySets, e.keys)
		}
		if prev, dup := v.byIss[e.iss]; dup {
			v.Close()
			return nil, fmt.Errorf("tokens: issuer %q: Issuer: %q is already the issuer of entry %q", e.name, e.iss, prev.name)
		}
		v.byIss[e.iss] = e
		if e.kind == KindGuest {
			v.guestGen[e.iss] = SecretGeneration(e.secret)
		}
	}
	if cfg.CacheSize >= 0 {
		c, err := newTokenCache(cmp.Or(cfg.CacheSize, DefaultCacheSize))
		if err != nil {
			v.Close()
			return nil, fmt.Errorf("tokens: CacheSize: %w", err)
		}
		v.cache = c
	}
	return v, nil
}

func newIssuerEntry(ctx context.Context, i int, in Issuer, cfg Config) (*issuerEntry, error) {
	e := &issuerEntry{name: in.Name, kind: in.Kind, iss: in.Issuer}
	if e.name == "" {
		e.name = fmt.Sprintf("issuers[%d]", i)
	}
	label := fmt.Sprintf("tokens: issuer %q", e.name)
	fail := func(field, format string, args ...any) error {
		return fmt.Errorf("%s: %s: %s", label, field, fmt.Sprintf(format, args...))
	}

	switch in.Kind {
	case KindXBSAnonymous, KindGuest, KindSecureAnonymous, KindAccess:
	case KindRegular:
		return nil, fail("Kind", "regular tokens ride on an xbs_anonymous entry: set Regular there")
	case "":
		return nil, fail("Kind", "required (xbs_anonymous, guest, secure_anonymous or access)")
	default:
		return nil, fail("Kind", "unknown kind %q (xbs_anonymous, guest, secure_anonymous or access)", in.Kind)
	}
	if in.Issuer == "" {
		return nil, fail("Issuer", "required: the exact iss of the issuer's tokens")
	}
	guest := in.Kind == KindGuest

	// Audiences.
	if guest {
		if len(in.Audiences) > 0 {
			return nil, fail("Audiences", "guest tokens carry no audience: leave it empty")
		}
	} else {
		if len(in.Audiences) == 0 {
			return nil, fail("Audiences", "at least one is required for %s", in.Kind)
		}
		if slices.Contains(in.Audiences, "") {
			return nil, fail("Audiences", "an audience is empty")
		}
		e.audiences = slices.Clone(in.Audiences)
	}

	// Algorithms: RFC 8725 §3.1, each issuer takes its own short list and
	// an asymmetric issuer never takes an HMAC algorithm (whose "key" an
	// attacker would read off the public JWKS).
	algs := in.Algorithms
	if len(algs) == 0 {
		algs = []string{map[Kind]string{
			KindXBSAnonymous: "RS256", KindGuest: "HS256", KindSecureAnonymous: "ES256", KindAccess: "ES256",
		}[in.Kind]}
	}
	e.algs = make(map[string]jwa.SignatureAlgorithm, len(algs))
	for _, a := range algs {
		if guest {
			if a != "HS256" {
				return nil, fail("Algorithms", "%q not allowed: guest tokens are HS256 only", a)
			}
			e.algs[a] = jwa.HS256
			continue
		}
		alg, ok := asymmetricAlgorithms[a]
		if !ok {
			if _, sym := symmetricAlgorithms[a]; sym || len(a) > 2 && a[:2] == "HS" {
				return nil, fail("Algorithms", "%q not allowed: %s tokens are signed with asymmetric keys only", a, in.Kind)
			}
			return nil, fail("Algorithms", "%q not supported (RS256, RS384, RS512, ES256, ES384, ES512)", a)
		}
		e.algs[a] = alg
	}

	// Keys.
	hasSource := in.Keys.File != "" || in.Keys.Inline != "" || in.Keys.URL != ""
	switch {
	case guest:
		if hasSource || in.PublicKeys != nil {
			return nil, fail("Keys", "guest tokens are verified with GuestSecret, not a key set")
		}
	case hasSource && in.PublicKeys != nil:
		return nil, fail("Keys", "set Keys or PublicKeys, not both")
	case in.PublicKeys != nil:
		if in.PublicKeys.Len() == 0 {
			return nil, fail("PublicKeys", "the key set is empty")
		}
		ks, err := NewStaticKeySet(in.PublicKeys)
		if err != nil {
			return nil, fail("PublicKeys", "%v", err)
		}
		e.keys = ks
	case hasSource:
		ks, err := NewKeySet(ctx, in.Keys, cfg.HTTPClient, KeyHooks{OnFetch: cfg.Hooks.OnJWKSFetch})
		if err != nil {
			return nil, fail("Keys", "%v", err)
		}
		e.keys = ks
	default:
		return nil, fail("Keys", "required for %s: a JWKS file, inline JWKS or URL, or PublicKeys", in.Kind)
	}
	closeKeys := func() {
		if e.keys != nil {
			e.keys.Close()
		}
	}

	// Regular.
	if in.Regular != nil {
		if in.Kind != KindXBSAnonymous {
			closeKeys()
			return nil, fail("Regular", "only an xbs_anonymous entry takes regular tokens")
		}
		e.regular = true
		e.regularTypes = make(map[string]bool)
		for _, t := range in.Regular.AuthorizationTypes {
			if t == "" || t == xbsAnonymousType {
				closeKeys()
				return nil, fail("Regular.AuthorizationTypes", "%q cannot mark a regular token", t)
			}
			e.regularTypes[t] = true
		}
	}

	// GuestSecret and MaxLifetime.
	if guest {
		if in.GuestSecret == "" {
			return nil, fail("GuestSecret", "required for a guest issuer")
		}
		// DecodeGuestSecret refuses a secret shorter than HS256 needs.
		secret, err := DecodeGuestSecret(in.GuestSecret)
		if err != nil {
			return nil, fail("GuestSecret", "%v", err)
		}
		e.secret = secret
		if in.MaxLifetime < 0 {
			return nil, fail("MaxLifetime", "must not be negative")
		}
		e.maxLifetime = cmp.Or(in.MaxLifetime, DefaultGuestMaxLifetime)
	} else {
		if in.GuestSecret != "" {
			closeKeys()
			return nil, fail("GuestSecret", "only a guest issuer has a secret")
		}
		if in.MaxLifetime != 0 {
			closeKeys()
			return nil, fail("MaxLifetime", "only for guest issuers")
		}
	}
	return e, nil
}

// Verify verifies raw as a token of any configured issuer and kind.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Token, error) {
	if len(raw) > v.maxSize {
		// Before hashing or caching: an oversize token costs nothing more.
		return nil, errorf(CodeTooLarge, "token is %d bytes, the bound is %d", len(raw), v.maxSize)
	}
	if v.cache == nil {
		tok, _, err := v.verify(ctx, raw, v.now())
		return tok, err
	}
	return v.cache.verify(ctx, v, raw)
}

// VerifyKind verifies raw like Verify, then refuses a valid token whose
// kind is not one of kinds with wrong_kind (an access token at the login
// exchange, a guest token where an access token is expected). With no
// kinds, every token is the wrong kind.
func (v *Verifier) VerifyKind(ctx context.Context, raw string, kinds ...Kind) (*Token, error) {
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(kinds, tok.Kind) {
		return nil, errorf(CodeWrongKind, "a %s token is not accepted here", tok.Kind)
	}
	return tok, nil
}

// GuestGeneration returns SecretGeneration of the secret of the guest
// issuer iss, the "gen" its access tokens must carry.
func (v *Verifier) GuestGeneration(iss string) (string, bool) {
	g, ok := v.guestGen[iss]
	return g, ok
}

// Status reports every key set of the Verifier.
func (v *Verifier) Status() []KeySetStatus {
	out := make([]KeySetStatus, 0, len(v.keySets))
	for _, ks := range v.keySets {
		out = append(out, ks.Status())
	}
	return out
}

// Close stops the background work of the Verifier's key sets.
func (v *Verifier) Close() {
	v.close.Do(func() {
		for _, ks := range v.keySets {
			ks.Close()
		}
	})
}

// verified is what a successful verification tells the cache beyond the
// token: which key set version vouched for it and at what time.
type verified struct {
	keys       *KeySet // nil for guest tokens
	keyVersion uint64
	at         time.Time // the clock the claims were checked against
}

// verify is the whole check, uncached. The order is the spec's: the
// issuer, the algorithm, the header, the key, the signature, then the
// claims (RFC 7519 §7.2, RFC 8725 §3).
func (v *Verifier) verify(ctx context.Context, raw string, now time.Time) (*Token, verified, error) {
	var meta verified
	p, err := parseJWT(raw, v.maxSize)
	if err != nil {
		return nil, meta, err
	}

	// RFC 7519 §4.1.1 "iss" picks the trusted issuer before anything else
	// in the token is believed. From here on that entry's rules alone apply.
	issV, ok := p.claims["iss"]
	if !ok {
		return nil, meta, errorf(CodeUntrustedIssuer, "iss claim absent")
	}
	iss, _ := issV.(string)
	e := v.byIss[iss]
	if e == nil {
		return nil, meta, errorf(CodeUntrustedIssuer, "iss is not a configured issuer")
	}

	// RFC 8725 §3.1: the algorithm is the issuer's. The header only chooses
	// among the entry's allow-list; the value used is the entry's own.
	alg, ok := e.algs[p.alg]
	if !ok {
		return nil, meta, errorf(CodeBadAlgorithm, "alg is not on the allow-list of issuer %q", e.name)
	}

	// RFC 8725 §3.11: explicit typing keeps one kind of token from being
	// taken for another.
	if err := e.checkTyp(&p.compactJWS); err != nil {
		return nil, meta, err
	}

	// RFC 7515 §4.1.4 "kid": the key comes from the entry's key set.
	var key any
	if e.kind == KindGuest {
		key = e.secret
	} else {
		if p.kid == "" {
			return nil, meta, errorf(CodeUnknownKey, "kid header absent: issuer %q selects keys by kid", e.name)
		}
		meta.keys, meta.keyVersion = e.keys, e.keys.Version()
		k, err := e.keys.Key(ctx, p.kid)
		if err != nil {
			var te *Error
			if errors.As(err, &te) {
				return nil, meta, te
			}
			return nil, meta, errorf(CodeKeysUnavailable, "keys of issuer %q unavailable", e.name)
		}
		if k == nil {
			return nil, meta, errorf(CodeUnknownKey, "no key with this kid for issuer %q", e.name)
		}
		if key, err = usableKey(alg, k); err != nil {
			return nil, meta, err
		}
	}

	// RFC 7515 §5.2 step 8: validate the signature.
	v.sigChecks.Add(1)
	if err := verifySignature(&p.compactJWS, alg, key); err != nil {
		return nil, meta, err
	}

	tok := &Token{Issuer: iss, IssuerName: e.name, Claims: p.claims}
	// Wall clock only: the claims are wall-clock times, and a cached entry
	// must notice the wall clock going back (the monotonic reading never
	// does).
	meta.at = now.Round(0)
	if err = v.checkTimes(p.claims, tok, now); err != nil {
		return nil, meta, err
	}
	if e.kind != KindGuest {
		if err := checkAudience(p.claims, e.audiences); err != nil {
			return nil, meta, err
		}
	}
	if tok.Name, _, err = optionalString(p.claims, "name"); err != nil {
		return nil, meta, err
	}
	if tok.Email, _, err = optionalString(p.claims, "email"); err != nil {
		return nil, meta, err
	}

	// The kind's own claims. Each kind has its own function and the entry
	// decides which runs, so no token satisfies two kinds' rules.
	switch e.kind {
	case KindXBSAnonymous:
		err = checkXBS(e, p.claims, tok)
	case KindGuest:
		err = v.checkGuest(e, p.claims, tok, now)
	case KindSecureAnonymous:
		err = checkSecureAnonymous(p.claims, tok)
	case KindAccess:
		err = v.checkAccess(p.claims, tok)
	default:
		err = errorf(CodeUntrustedIssuer, "issuer %q has no kind", e.name)
	}
	if err != nil {
		return nil, meta, err
	}
	return tok, meta, nil
}

// checkTyp applies the entry's "typ" rule (RFC 7515 §4.1.9).
func (e *issuerEntry) checkTyp(c *compactJWS) error {
	switch e.kind {
	case KindGuest:
		if !c.hasTyp || c.typ != "JWT" {
			return errorf(CodeBadHeader, "typ must be JWT for a guest token")
		}
	case KindSecureAnonymous:
		if !c.hasTyp || c.typ != "sat+jwt" {
			return errorf(CodeBadHeader, "typ must be sat+jwt for a secure anonymous token")
		}
	case KindAccess:
		if !c.hasTyp || c.typ != "at+jwt" {
			return errorf(CodeBadHeader, "typ must be at+jwt for an access token")
		}
	case KindXBSAnonymous:
		// An ID token: typ absent or JWT. A sat+jwt or at+jwt here is a
		// token of another kind presented to this issuer.
		if c.hasTyp && c.typ != "JWT" {
			return errorf(CodeBadHeader, "typ must be absent or JWT for an ID token")
		}
	}
	return nil
}

// checkTimes applies exp, nbf and iat with the leeway and sets
// tok.ExpiresAt.
func (v *Verifier) checkTimes(claims map[string]any, tok *Token, now time.Time) error {
	// RFC 7519 §4.1.4: "the current date/time MUST be before the expiration
	// date/time listed in the "exp" claim". Every kind must expire.
	exp, ok, err := numericDate(claims, "exp")
	if err != nil {
		return err
	}
	if !ok {
		return errorf(CodeBadClaims, "exp claim required")
	}
	if !now.Before(exp.Add(v.leeway)) {
		return errorf(CodeExpired, "token expired")
	}
	tok.ExpiresAt = exp

	// RFC 7519 §4.1.5: "the current date/time MUST be after or equal to the
	// not-before date/time listed in the "nbf" claim".
	nbf, ok, err := numericDate(claims, "nbf")
	if err != nil {
		return err
	}
	if ok && now.Add(v.leeway).Before(nbf) {
		return errorf(CodeNotYetValid, "nbf is in the future")
	}
	// RFC 7519 §4.1.6 "iat": a token cannot have been issued in the future.
	iat, ok, err := numericDate(claims, "iat")
	if err != nil {
		return err
	}
	if ok && now.Add(v.leeway).Before(iat) {
		return errorf(CodeNotYetValid, "iat is in the future")
	}
	_, _, err = numericDate(claims, "auth_time")
	return err
}

// maxNumericDate is 9999-12-31T23:59:59Z: later dates are not dates.
const maxNumericDate = 253402300799

// numericDate reads a NumericDate claim (the parser made sure it is a
// JSON number). Seconds may have a fraction (RFC 7519 §2).
func numericDate(claims map[string]any, name string) (time.Time, bool, error) {
	v, ok := claims[name]
	if !ok {
		return time.Time{}, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false, errorf(CodeBadClaims, "%s must be a JSON number", name)
	}
	if i, err := n.Int64(); err == nil {
		if i < 0 || i > maxNumericDate {
			return time.Time{}, false, errorf(CodeBadClaims, "%s is out of range", name)
		}
		return time.Unix(i, 0), true, nil
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, false, errorf(CodeBadClaims, "%s is out of range", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// checkAudience applies RFC 7519 §4.1.3: "If the principal processing the
// claim does not identify itself with a value in the "aud" claim when this
// claim is present, then the JWT MUST be rejected." Here it must be present.
func checkAudience(claims map[string]any, want []string) error {
	switch aud := claims["aud"].(type) {
	case nil:
		return errorf(CodeBadAudience, "aud claim absent")
	case string:
		if slices.Contains(want, aud) {
			return nil
		}
	case []any:
		ok := false
		for _, a := range aud {
			s, isString := a.(string)
			if !isString {
				return errorf(CodeBadAudience, "aud must be a string or an array of strings")
			}
			ok = ok || slices.Contains(want, s)
		}
		if ok {
			return nil
		}
	default:
		return errorf(CodeBadAudience, "aud must be a string or an array of strings")
	}
	return errorf(CodeBadAudience, "aud does not name this issuer's audience")
}

// xbsAnonymousType is the custom:authorization_type of an anonymous token.
const xbsAnonymousType = "XBS_ANONYMOUS"

// checkXBS applies the rules of an xbs_anonymous entry's tokens: Cognito-
// style ID tokens, anonymous or (when the entry opts in) regular.
func checkXBS(e *issuerEntry, claims map[string]any, tok *Token) error {
	// Cognito: an ID token says token_use "id"; its access tokens say
	// "access" and carry no identity claims.
	if use, _ := claims["token_use"].(string); use != "id" {
		return errorf(CodeBadClaims, `token_use must be "id"`)
	}
	sub, err := requiredString(claims, "sub")
	if err != nil {
		return err
	}
	tok.Subject = sub
	authType, hasType, err := optionalString(claims, "custom:authorization_type")
	if err != nil {
		return err
	}
	if hasType && authType == xbsAnonymousType {
		tok.Kind = KindXBSAnonymous
		return checkAnonymousEntry(claims)
	}
	if !e.regular {
		return errorf(CodeBadClaims, "custom:authorization_type is not XBS_ANONYMOUS and issuer %q takes no regular tokens", e.name)
	}
	if hasType && !e.regularTypes[authType] {
		return errorf(CodeBadClaims, "custom:authorization_type is not one issuer %q takes", e.name)
	}
	tok.Kind = KindRegular
	return nil
}

// checkAnonymousEntry checks the binding of an anonymous token: a widget
// (custom:wid), a public link's channel (custom:channel_id), or both for a
// Kite widget session.
func checkAnonymousEntry(claims map[string]any) error {
	entry, hasEntry, err := optionalString(claims, "custom:entry")
	if err != nil {
		return err
	}
	wid, _, err := optionalString(claims, "custom:wid")
	if err != nil {
		return err
	}
	channel, _, err := optionalString(claims, "custom:channel_id")
	if err != nil {
		return err
	}
	switch {
	case !hasEntry: // an external user pool's widget token
		if wid == "" {
			return errorf(CodeBadClaims, "custom:wid claim required")
		}
	case entry == "kite":
		if wid == "" || channel == "" {
			return errorf(CodeBadClaims, "a kite token needs custom:wid and custom:channel_id")
		}
	case entry == "public_link":
		if channel == "" {
			return errorf(CodeBadClaims, "a public_link token needs custom:channel_id")
		}
		if wid != "" {
			return errorf(CodeBadClaims, "a public_link token has no custom:wid")
		}
	default:
		return errorf(CodeBadClaims, "custom:entry has an unknown value")
	}
	return nil
}

// checkGuest applies the rules of a partner app's guest token.
func (v *Verifier) checkGuest(e *issuerEntry, claims map[string]any, tok *Token, now time.Time) error {
	sub, err := requiredString(claims, "sub")
	if err != nil {
		return err
	}
	if !isGuestSubject(sub) {
		return errorf(CodeBadClaims, "sub must be letters, digits and hyphens")
	}
	tok.Subject = sub
	// A partner mints guest tokens for sessions, not for ever: a far exp
	// would outlive the partner's own decision to revoke the guest.
	if tok.ExpiresAt.After(now.Add(e.maxLifetime + v.leeway)) {
		return errorf(CodeBadClaims, "exp is more than %s ahead", e.maxLifetime)
	}
	tok.Kind = KindGuest
	return nil
}

func isGuestSubject(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return s != ""
}

// checkSecureAnonymous applies the rules of a SAT guestgate minted.
func checkSecureAnonymous(claims map[string]any, tok *Token) error {
	for _, name := range [...]string{"sub", "role", "scope", "account_id"} {
		if _, err := requiredString(claims, name); err != nil {
			return err
		}
	}
	for _, name := range [...]string{"provider_id", "first_name", "last_name"} {
		if _, _, err := optionalString(claims, name); err != nil {
			return err
		}
	}
	if m, ok := claims["metadata"]; ok {
		if _, ok := m.(map[string]any); !ok {
			return errorf(CodeBadClaims, "metadata must be an object")
		}
	}
	tok.Subject = claims["sub"].(string)
	tok.Kind = KindSecureAnonymous
	return nil
}

// checkAccess applies the rules of an access token from the login
// exchange, revoked when its guest issuer's secret changed.
func (v *Verifier) checkAccess(claims map[string]any, tok *Token) error {
	var vals [4]string
	for i, name := range [...]string{"sub", "guest_iss", "gen", "scope"} {
		s, err := requiredString(claims, name)
		if err != nil {
			return err
		}
		vals[i] = s
	}
	sub, guestIss, gen := vals[0], vals[1], vals[2]
	guestSub, hasGuestSub, err := optionalString(claims, "guest_sub")
	if err != nil {
		return err
	}
	if hasGuestSub && sub != GuestPersonID(guestIss, guestSub) {
		return errorf(CodeBadClaims, "sub is not the person id of guest_iss and guest_sub")
	}
	want, ok := v.guestGen[guestIss]
	if !ok {
		return errorf(CodeRevoked, "guest_iss is no longer a configured guest issuer")
	}
	if subtle.ConstantTimeCompare([]byte(gen), []byte(want)) != 1 {
		return errorf(CodeRevoked, "the guest issuer's secret changed since the token was minted")
	}
	tok.Subject = sub
	tok.Kind = KindAccess
	return nil
}

// requiredString returns the claim name, which must be a non-empty string.
func requiredString(claims map[string]any, name string) (string, error) {
	s, ok := claims[name].(string)
	if !ok || s == "" {
		return "", errorf(CodeBadClaims, "%s claim required (a non-empty string)", name)
	}
	return s, nil
}

// optionalString returns the claim name, which when present must be a
// string.
func optionalString(claims map[string]any, name string) (string, bool, error) {
	v, ok := claims[name]
	if !ok {
		return "", false, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", false, errorf(CodeBadClaims, "%s must be a string", name)
	}
	return s, true, nil
}
