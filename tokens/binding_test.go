package tokens

import "testing"

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
