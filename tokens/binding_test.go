package tokens

import (
	"testing"
	"time"
)

// The binding claims are believed only from an entry that asserts them:
// an outside pool's anonymous token carrying custom:entry or
// custom:channel_id is refused, whatever their values, and the same token
// without them verifies.
func TestBindingClaimsOnlyFromAnIssuerThatAssertsThem(t *testing.T) {
	f := newVFFixture(t)
	v := f.verifier(t)
	outside := vfWith(f.xbsClaims(), "iss", vfRegularIss, "aud", vfRegularAud) // user-pool: asserts none
	if code, _, err := vfCode(v, f.xbs(t, outside)); code != "" {
		t.Fatalf("an outside pool's unbound token: %s (%v)", code, err)
	}
	for name, c := range map[string]vfClaims{
		"kite session":     vfWith(outside, "custom:entry", "kite", "custom:channel_id", "ch-private"),
		"public link":      vfWith(outside, "custom:entry", "public_link", "custom:channel_id", "ch-public", "custom:wid", nil),
		"entry alone":      vfWith(outside, "custom:entry", "kite"),
		"channel alone":    vfWith(outside, "custom:channel_id", "ch-private"),
		"entry of false":   vfWith(outside, "custom:entry", false),
		"channel of a num": vfWith(outside, "custom:channel_id", 7),
	} {
		if code, _, _ := vfCode(v, f.xbs(t, c)); code != CodeBadClaims {
			t.Errorf("%s from an issuer that does not assert binding claims: %q, want %s", name, code, CodeBadClaims)
		}
	}
	// The entry that asserts them (guestgate's own, in these tests) binds.
	if code, tok, err := vfCode(v, f.xbs(t, vfWith(f.xbsClaims(), "custom:entry", "kite", "custom:channel_id", "kite-1"))); code != "" || tok.Kind != KindXBSAnonymous {
		t.Fatalf("own session issuer's kite token: %s (%v)", code, err)
	}
}

// A SAT names its visitor in first_name and last_name: that is its display
// name (upstream's x-guestgate-name), unless it carries a name of its own.
func TestSATDisplayNameFromFirstAndLastName(t *testing.T) {
	f := newVFFixture(t)
	v := f.verifier(t)
	for _, tt := range []struct {
		claims vfClaims
		want   string
	}{
		{vfWith(f.satClaims(), "first_name", "Ada", "last_name", "Lovelace"), "Ada Lovelace"},
		{vfWith(f.satClaims(), "first_name", "Ada"), "Ada"},
		{vfWith(f.satClaims(), "last_name", "Lovelace"), "Lovelace"},
		{vfWith(f.satClaims(), "first_name", "Ada", "last_name", "Lovelace", "name", "Countess"), "Countess"},
		{f.satClaims(), ""},
	} {
		code, tok, err := vfCode(v, f.sat(t, tt.claims))
		if code != "" {
			t.Fatalf("%v: %s (%v)", tt.claims, code, err)
		}
		if tok.Name != tt.want {
			t.Errorf("first_name %v, last_name %v, name %v: display name %q, want %q", tt.claims["first_name"], tt.claims["last_name"], tt.claims["name"], tok.Name, tt.want)
		}
	}
}

// The binding claims mean one thing whatever the kind: a token of any
// kind, from any entry but one that asserts them on an anonymous token,
// that carries custom:entry or custom:channel_id, of any type or value, is
// refused. (A regular token of the same pool, a partner's guest token, a
// SAT, an access token: none of their issuers vouches for a binding, and a
// policy that reads the claim without checking the kind must never see
// one.) Names differing in case are other claims: never believed, never
// refused.
func TestBindingClaimsRefusedFromEveryKindThatDoesNotAssertThem(t *testing.T) {
	f := newVFFixture(t)
	v := f.verifier(t)
	kinds := map[string]struct {
		claims vfClaims
		sign   func(testing.TB, vfClaims) string
	}{
		"regular of the user pool":       {f.regularClaims(), f.xbs},
		"regular of the asserting entry": {vfWith(f.regularClaims(), "iss", vfXBSIss, "aud", vfXBSAud, "custom:authorization_type", "SSO"), f.xbs},
		"anonymous of the user pool":     {vfWith(f.xbsClaims(), "iss", vfRegularIss, "aud", vfRegularAud), f.xbs},
		"guest":                          {f.guestClaims(), f.guest},
		"secure_anonymous":               {f.satClaims(), f.sat},
		"access":                         {f.accessClaims(t), f.access},
		"anonymous of the asserting entry, no entry claim": {f.xbsClaims(), f.xbs},
	}
	values := map[string]any{"kite": "kite", "public_link": "public_link", "empty": "", "number": 7, "false": false,
		"null": nil, "list": []any{"kite"}, "object": map[string]any{"v": "kite"}}
	for kind, k := range kinds {
		// Without the claims, each verifies (the asserting entry's regular
		// token excepted: that entry takes no regular tokens).
		if code, _, err := vfCode(v, k.sign(t, k.claims)); code != "" && kind != "regular of the asserting entry" {
			t.Fatalf("%s without binding claims: %s (%v)", kind, code, err)
		}
		for _, name := range []string{"custom:entry", "custom:channel_id"} {
			if kind == "anonymous of the asserting entry, no entry claim" && name == "custom:entry" {
				continue // the entry's own sessions: TestBindingClaimsOnlyFromAnIssuerThatAssertsThem
			}
			for vname, val := range values {
				c := vfWith(k.claims)
				c[name] = val
				if code, _, _ := vfCode(v, k.sign(t, c)); code != CodeBadClaims {
					t.Errorf("%s carrying %s = %s: %q, want %s", kind, name, vname, code, CodeBadClaims)
				}
			}
		}
		for _, name := range []string{"Custom:Entry", "CUSTOM:CHANNEL_ID", "custom:entry ", "custom_channel_id"} {
			c := vfWith(k.claims, name, "kite")
			code, tok, _ := vfCode(v, k.sign(t, c))
			if code == "" && tok != nil {
				if _, ok := tok.Claims()["custom:entry"]; ok {
					t.Errorf("%s carrying %q: the policy sees custom:entry", kind, name)
				}
			}
		}
	}
}

// TestLatestVerifyingInstantOfATokenMintedByT pins what a revocation's end
// (wiring.TokenLifetimes) must cover: a token minted at T (iat = T) may
// carry exp up to T + max lifetime + leeway, and verifies until the leeway
// past its exp, so until T + max lifetime + 2 × leeway, never later.
func TestLatestVerifyingInstantOfATokenMintedByT(t *testing.T) {
	f := newVFFixture(t)
	v := f.verifier(t)
	m, l := DefaultMaxLifetime(KindXBSAnonymous), v.leeway
	tok := f.xbs(t, vfWith(f.xbsClaims(), "iat", f.unix(0), "auth_time", f.unix(0), "exp", f.unix(m+l)))
	t0 := f.clock.Now()
	f.clock.Set(t0.Add(m + 2*l - time.Second))
	if code, _, err := vfCode(v, tok); code != "" {
		t.Fatalf("at T + max lifetime + 2 leeway - 1s: %s (%v)", code, err)
	}
	f.clock.Set(t0.Add(m + 2*l))
	if code, _, _ := vfCode(v, tok); code != CodeExpired {
		t.Fatalf("at T + max lifetime + 2 leeway: %q, want %s", code, CodeExpired)
	}
}
