package tokens

// Verify: the steps every token takes, in the order the specifications
// give them (RFC 7519 §7.2, RFC 8725 §3), each with its stable code. The
// last step hands the claims to the one check of the entry's kind
// (claims.go).

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"time"
)

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

	// The entry's own string: every token of an issuer shares it.
	tok := &Token{Issuer: e.iss, IssuerName: e.name, Payload: p.payload}
	// Wall clock only: the claims are wall-clock times, and a cached entry
	// must notice the wall clock going back (the monotonic reading never
	// does).
	meta.at = now.Round(0)
	if err = v.checkTimes(e, p.claims, tok, now); err != nil {
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
		err = checkGuest(p.claims, tok)
	case KindSecureAnonymous:
		err = checkSecureAnonymous(p.claims, tok)
	case KindAccess:
		err = v.checkAccess(p.claims, tok)
	default:
		err = errorf(CodeUntrustedIssuer, "issuer %q has no kind", e.name)
	}
	if err == nil {
		err = checkNoBinding(e, p.claims, tok)
	}
	if err != nil {
		return nil, meta, err
	}
	tok.ID, _ = p.claims["jti"].(string)
	tok.Widget, _ = p.claims["custom:wid"].(string)
	if tok.Kind == KindAccess {
		tok.GuestIssuer, _ = p.claims["guest_iss"].(string)
		tok.GuestSubject, _ = p.claims["guest_sub"].(string)
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

// checkTimes applies exp, nbf and iat with the leeway, and the entry's
// bound on the token's lifetime, and sets tok.ExpiresAt.
func (v *Verifier) checkTimes(e *issuerEntry, claims map[string]any, tok *Token, now time.Time) error {
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
	// RFC 7519 leaves the lifetime to the issuer, RFC 8725 §3.10 the
	// verifier's policy; a token minted to last (exp in the year 3000)
	// outlives every rotation and revocation. The entry bounds it: exp -
	// iat, or, without iat, exp - now, each with the leeway (a fraction
	// of a second, a clock a little ahead). Either holds at every later
	// time too, as the cache needs (outOfTime).
	switch {
	case ok && exp.Sub(iat) > e.maxLifetime+v.leeway:
		return errorf(CodeBadClaims, "exp is more than %s after iat", e.maxLifetime)
	case !ok && exp.After(now.Add(e.maxLifetime+v.leeway)):
		return errorf(CodeBadClaims, "exp is more than %s ahead", e.maxLifetime)
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
