package tokens

// The claims of each kind, checked after the steps every token takes
// (verify.go). The issuer entry's kind picks exactly one of these
// functions, so no token is ever held to two kinds' rules.

import (
	"crypto/subtle"
	"strings"
)

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
		return checkAnonymousEntry(e, claims)
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
// Kite widget session. The binding claims (custom:entry, custom:channel_id)
// are believed only from an entry that asserts them: any other entry's
// token carrying either is refused, never let through with them ignored,
// so the policy never sees a binding its issuer could not vouch for.
func checkAnonymousEntry(e *issuerEntry, claims map[string]any) error {
	if !e.binding {
		if err := refuseBinding(e, claims); err != nil {
			return err
		}
	}
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
		if _, ok := claims["custom:channel_id"]; ok {
			// A binding names how the visitor came in: a channel without an
			// entry is no session guestgate mints.
			return errorf(CodeBadClaims, "custom:channel_id without custom:entry")
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

// bindingClaims are the claims only an entry that asserts them may carry.
var bindingClaims = [...]string{"custom:entry", "custom:channel_id"}

// refuseBinding refuses a token that carries a binding claim, of any type
// or value.
func refuseBinding(e *issuerEntry, claims map[string]any) error {
	for _, name := range bindingClaims {
		if _, ok := claims[name]; ok {
			return errorf(CodeBadClaims, "%s: issuer %q does not assert binding claims (asserts_binding_claims)", name, e.name)
		}
	}
	return nil
}

// checkNoBinding holds every kind to the binding rule, not only anonymous
// tokens: a binding claim is believed only on an xbs_anonymous token of an
// entry that asserts it. A regular token of the same pool, a partner's
// guest token, a SAT or an access token carrying one is refused, so no
// policy that reads the claim without checking the kind ever sees one its
// issuer did not vouch for.
func checkNoBinding(e *issuerEntry, claims map[string]any, tok *Token) error {
	if e.binding && tok.Kind == KindXBSAnonymous {
		return nil // checkAnonymousEntry checked their shape
	}
	return refuseBinding(e, claims)
}

// checkGuest applies the rules of a partner app's guest token.
func checkGuest(claims map[string]any, tok *Token) error {
	sub, err := requiredString(claims, "sub")
	if err != nil {
		return err
	}
	if !isGuestSubject(sub) {
		return errorf(CodeBadClaims, "sub must be letters, digits and hyphens")
	}
	tok.Subject = sub
	// Its lifetime is bounded with every kind's (checkTimes): a partner
	// mints guest tokens for sessions, not for ever.
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
	if tok.Name == "" {
		// A SAT names its visitor in first_name and last_name: its display
		// name, as upstream gets it (x-guestgate-name).
		first, _ := claims["first_name"].(string)
		last, _ := claims["last_name"].(string)
		tok.Name = strings.TrimSpace(strings.TrimSpace(first) + " " + strings.TrimSpace(last))
	}
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
