package config

// The trusted issuers (tokens:) and the keys guestgate mints with
// (minting:): their types, defaults and validation.

import (
	"fmt"
	"strings"
	"time"
)

// Tokens lists the trusted issuers and the verifier's bounds.
type Tokens struct {
	// MaxSize bounds a token in bytes; a longer one is token_error
	// too_large, answered as any other refusal. Empty: 8192 (real tokens
	// of every kind are under 2 KiB), at most 64 KiB: far below
	// listen.max_message_bytes, so an oversize token is a deny with its
	// reason, never a gRPC error.
	MaxSize int `yaml:"max_size"`
	// Leeway is the clock skew allowed on exp, nbf and iat, at most 60s
	// (RFC 8725 leaves it to the verifier; a longer one keeps expired
	// tokens alive). Empty: 60s.
	Leeway Duration `yaml:"leeway"`
	// CacheSize bounds the verified-token cache (entries). Empty: 10000.
	// Tokens that failed for good (bad signature, expired, malformed, an
	// untrusted issuer, algorithm, header or audience) are remembered
	// apart, in a quarter as many entries, so a client retrying one is
	// turned away without another signature check.
	CacheSize int `yaml:"cache_size"`
	// Issuers are the trusted parties. Empty: no token verifies.
	Issuers []TrustedIssuer `yaml:"issuers"`
}

// TrustedIssuer is one party whose tokens guestgate accepts.
type TrustedIssuer struct {
	// Name names the entry in logs and metrics. Required, unique.
	Name string `yaml:"name"`
	// Kind is xbs_anonymous, guest, secure_anonymous or access. Required.
	Kind string `yaml:"kind"`
	// Issuer is the exact "iss" of the tokens. Required, unique.
	Issuer string `yaml:"issuer"`
	// Audiences are the accepted "aud" values: the app client ids of an
	// xbs_anonymous pool; guestgate's own audience for secure_anonymous and
	// access (empty: taken from minting).
	Audiences []string `yaml:"audiences"`
	// Algorithms is the allow-list. Empty: RS256 (xbs_anonymous), HS256
	// (guest, the only one allowed), ES256 (secure_anonymous, access).
	Algorithms []string `yaml:"algorithms"`

	// JWKSFile, JWKS (inline JSON) and JWKSURL are the verification keys;
	// at most one. Empty for secure_anonymous, access and an xbs_anonymous
	// entry whose issuer is guestgate's own: guestgate's minting keys.
	JWKSFile string `yaml:"jwks_file"`
	JWKS     string `yaml:"jwks"`
	JWKSURL  string `yaml:"jwks_url"`
	// JWKSRefresh is the background refresh of a JWKS URL. Empty: 1h.
	JWKSRefresh Duration `yaml:"jwks_refresh"`
	// JWKSMaxStale is how long the last good keys of a failing URL serve.
	// Empty: 24h.
	JWKSMaxStale Duration `yaml:"jwks_max_stale"`

	// AssertsBindingClaims says the entry's issuer asserts custom:entry and
	// custom:channel_id, the claims that bind an xbs_anonymous session to a
	// Kite channel or a public link's channel. A token of an entry that does
	// not assert them and carries either is refused (token_error
	// bad_claims): a user pool whose users may write their own custom
	// attributes would otherwise hand every visitor every channel. Empty:
	// true for guestgate's own session issuer (minting.xbs_anonymous.issuer),
	// false for every other entry. xbs_anonymous entries only.
	AssertsBindingClaims *bool `yaml:"asserts_binding_claims"`

	// Regular opts an xbs_anonymous entry in to regular (signed-in) ID
	// tokens of the same pool. Empty: they are refused as bad_claims.
	Regular *Regular `yaml:"regular"`

	// SecretFile or SecretEnv holds a guest issuer's secret, base64 as the
	// guest issuer hands it out. Exactly one, for kind guest only.
	SecretFile string `yaml:"secret_file"`
	SecretEnv  string `yaml:"secret_env"`
	// MaxLifetime bounds the lifetime of the entry's tokens: exp - iat, or
	// how far exp lies ahead of now for a token without iat (the leeway
	// allowed on top). A longer-lived token is token_error bad_claims: one
	// minted to last (exp in the year 3000) would outlive every rotation
	// and revocation. At most 168h. Empty, by kind: xbs_anonymous 1h (an ID
	// token's validity, Cognito's default and guestgate's anonymous
	// sessions'; raise it to the pool's ID token validity), guest 24h,
	// access 6h (the login exchange's), secure_anonymous the longest
	// duration of issuer.providers when the entry is guestgate's own SAT
	// issuer (minting.secure_anonymous.issuer), else 24h (the longest a
	// provider's may be).
	MaxLifetime Duration `yaml:"max_lifetime"`

	// Secret is the secret read from SecretFile or SecretEnv at load.
	Secret string `yaml:"-"`
}

// Regular is the opt-in for regular ID tokens.
type Regular struct {
	// AuthorizationTypes lists the custom:authorization_type values accepted
	// besides an absent one.
	AuthorizationTypes []string `yaml:"authorization_types"`
}

// Minting holds the keys guestgate signs its own tokens with.
type Minting struct {
	// SAT, Access and XBS are the three kinds guestgate mints.
	SAT    MintedKind `yaml:"secure_anonymous"`
	Access MintedKind `yaml:"access"`
	XBS    MintedKind `yaml:"xbs_anonymous"`
	// AnonymousEmailDomain is the domain of XBS tokens' synthetic e-mail.
	// Empty: "guestgate.invalid".
	AnonymousEmailDomain string `yaml:"anonymous_email_domain"`
}

// MintedKind is one minted kind's issuer, audience and keys.
type MintedKind struct {
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	// KeyFiles are PEM or JWK private keys; the first signs, all verify.
	KeyFiles []string `yaml:"key_files"`
}

// Configured says whether this kind is minted at all.
func (m MintedKind) Configured() bool {
	return m.Issuer != "" || m.Audience != "" || len(m.KeyFiles) > 0
}

// MaxTokenLifetime bounds tokens.issuers[].max_lifetime: a token that
// lives a week already outlasts any session it was minted for.
const MaxTokenLifetime = 7 * 24 * time.Hour

// Kinds a trusted issuer may have.
var issuerKinds = map[string]bool{"xbs_anonymous": true, "guest": true, "secure_anonymous": true, "access": true}

func (c *Config) applyTokenDefaults() {
	if c.Tokens.MaxSize == 0 {
		c.Tokens.MaxSize = DefaultMaxTokenSize
	}
	if c.Tokens.Leeway == 0 {
		c.Tokens.Leeway = Duration(60 * time.Second)
	}
	if c.Tokens.CacheSize == 0 {
		c.Tokens.CacheSize = DefaultCacheSize
	}
	for i := range c.Tokens.Issuers {
		ti := &c.Tokens.Issuers[i]
		if ti.AssertsBindingClaims == nil && ti.Kind == "xbs_anonymous" {
			own := c.Minting.XBS.Configured() && ti.Issuer == c.Minting.XBS.Issuer
			ti.AssertsBindingClaims = &own
		}
	}
	// The SATs guestgate mints live as long as their provider's duration:
	// the verifier of its own SAT issuer takes no longer ones. (The other
	// kinds' defaults are the verifier's own.)
	for i := range c.Tokens.Issuers {
		ti := &c.Tokens.Issuers[i]
		if ti.Kind == "secure_anonymous" && ti.MaxLifetime == 0 && ti.Issuer == c.Minting.SAT.Issuer {
			for _, p := range c.Issuer.Providers {
				ti.MaxLifetime = max(ti.MaxLifetime, p.Duration)
			}
		}
	}
}

// validateTokens checks tokens: and minting:.
func (c *Config) validateTokens(add func(key, format string, args ...any)) {
	if c.Tokens.MaxSize < 512 || c.Tokens.MaxSize > 64<<10 {
		add("tokens.max_size", "must be between 512 and 65536")
	}
	if c.Tokens.Leeway.D() > time.Minute {
		add("tokens.leeway", "must be at most 60s")
	}
	if c.Tokens.CacheSize < 0 {
		add("tokens.cache_size", "must not be negative")
	}
	names, issuers := map[string]bool{}, map[string]bool{}
	for i, ti := range c.Tokens.Issuers {
		key := fmt.Sprintf("tokens.issuers[%d]", i)
		if ti.MaxLifetime.D() > MaxTokenLifetime {
			add(key+".max_lifetime", "must be at most %s", MaxTokenLifetime)
		}
		if ti.Name == "" {
			add(key+".name", "required")
		} else if names[ti.Name] {
			add(key+".name", "%q is used by another entry", ti.Name)
		}
		names[ti.Name] = true
		if !issuerKinds[ti.Kind] {
			add(key+".kind", "%q is not one of xbs_anonymous, guest, secure_anonymous, access", ti.Kind)
		}
		if ti.Issuer == "" {
			add(key+".issuer", "required")
		} else if issuers[ti.Issuer] {
			add(key+".issuer", "%q is trusted by another entry: an iss picks exactly one entry", ti.Issuer)
		}
		issuers[ti.Issuer] = true
		sources := 0
		for _, s := range []string{ti.JWKSFile, ti.JWKS, ti.JWKSURL} {
			if s != "" {
				sources++
			}
		}
		if sources > 1 {
			add(key, "set at most one of jwks_file, jwks and jwks_url")
		}
		switch ti.Kind {
		case "guest":
			if sources > 0 {
				add(key, "a guest issuer verifies with its secret, not a JWKS")
			}
			if ti.Secret == "" {
				add(key+".secret_file", "a guest issuer needs secret_file or secret_env")
			}
			if len(ti.Audiences) > 0 {
				add(key+".audiences", "guest tokens carry no audience")
			}
		default:
			if ti.SecretFile != "" || ti.SecretEnv != "" {
				add(key+".secret_file", "only a guest issuer has a secret")
			}
			if ti.Kind == "xbs_anonymous" && len(ti.Audiences) == 0 {
				add(key+".audiences", "list the app client ids the pool's ID tokens are for")
			}
		}
		if ti.AssertsBindingClaims != nil && ti.Kind != "xbs_anonymous" {
			add(key+".asserts_binding_claims", "only an xbs_anonymous entry's tokens carry binding claims")
		}
		if ti.Regular != nil && ti.Kind != "xbs_anonymous" {
			add(key+".regular", "only an xbs_anonymous entry can opt in to regular tokens")
		}
		if ti.JWKSURL != "" && !strings.HasPrefix(ti.JWKSURL, "https://") && !isLoopbackURL(ti.JWKSURL) {
			add(key+".jwks_url", "must be https")
		}
	}
	for key, m := range map[string]MintedKind{"minting.secure_anonymous": c.Minting.SAT, "minting.access": c.Minting.Access, "minting.xbs_anonymous": c.Minting.XBS} {
		if !m.Configured() {
			continue
		}
		if m.Issuer == "" {
			add(key+".issuer", "required")
		}
		if m.Audience == "" {
			add(key+".audience", "required")
		}
		if len(m.KeyFiles) == 0 {
			add(key+".key_files", "at least one signing key")
		}
	}
}
