package tokens

// What a Verifier is built from (Config, one Issuer per trusted issuer)
// and New, which validates it once, at start, into issuer entries holding
// their keys. Verify (verify.go) then only reads them.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
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
	// DefaultXBSMaxLifetime is an ID token's: Cognito's default validity,
	// and what guestgate's anonymous sessions get (DefaultXBSTTL).
	DefaultXBSMaxLifetime = time.Hour
	// DefaultSATMaxLifetime is the longest a SAT provider's duration may
	// be (config: issuer.providers[].duration).
	DefaultSATMaxLifetime = 24 * time.Hour
	// DefaultAccessMaxLifetime is the login exchange's access token's
	// (DefaultAccessTTL).
	DefaultAccessMaxLifetime = DefaultAccessTTL
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
	// AssertsBindingClaims, on an xbs_anonymous entry, says its issuer
	// asserts custom:entry and custom:channel_id, which bind an anonymous
	// session to a channel (guestgate's own session issuer). False: an
	// anonymous token of the entry that carries either is bad_claims,
	// since a pool whose users may write their own custom attributes would
	// otherwise bind its visitors to any channel.
	AssertsBindingClaims bool
	// Regular, on an xbs_anonymous entry, takes regular ID tokens too. Nil:
	// a token that is not XBS_ANONYMOUS is bad_claims.
	Regular *Regular
	// GuestSecret is a guest issuer's secret, base64 as handed out (see
	// DecodeGuestSecret). Required for guest, refused for other kinds.
	GuestSecret string
	// MaxLifetime bounds a token's lifetime: exp - iat, or, for a token
	// without iat, how far ahead of now its exp may be. A longer one is
	// bad_claims: a token minted to last (exp in the year 3000) outlives
	// every key rotation and revocation. Zero: the kind's default,
	// DefaultXBSMaxLifetime (regular tokens too), DefaultGuestMaxLifetime,
	// DefaultSATMaxLifetime or DefaultAccessMaxLifetime.
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
	binding      bool   // asserts custom:entry and custom:channel_id
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
	cfg.Now = v.now // the key sets run on the verifier's clock
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
		ks, err := newKeySet(ctx, in.Keys, cfg.HTTPClient, KeyHooks{OnFetch: cfg.Hooks.OnJWKSFetch}, cfg.Now)
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

	if in.AssertsBindingClaims && in.Kind != KindXBSAnonymous {
		closeKeys()
		return nil, fail("AssertsBindingClaims", "only an xbs_anonymous entry's tokens carry binding claims")
	}
	e.binding = in.AssertsBindingClaims

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

	// GuestSecret.
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
	} else if in.GuestSecret != "" {
		closeKeys()
		return nil, fail("GuestSecret", "only a guest issuer has a secret")
	}
	if in.MaxLifetime < 0 {
		closeKeys()
		return nil, fail("MaxLifetime", "must not be negative")
	}
	e.maxLifetime = cmp.Or(in.MaxLifetime, DefaultMaxLifetime(in.Kind))
	return e, nil
}

// DefaultMaxLifetime is the bound of a kind's tokens' lifetime when its
// issuer entry sets none (Issuer.MaxLifetime).
func DefaultMaxLifetime(k Kind) time.Duration {
	return map[Kind]time.Duration{
		KindXBSAnonymous: DefaultXBSMaxLifetime, KindGuest: DefaultGuestMaxLifetime,
		KindSecureAnonymous: DefaultSATMaxLifetime, KindAccess: DefaultAccessMaxLifetime,
	}[k]
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
