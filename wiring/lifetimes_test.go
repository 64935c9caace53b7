package wiring

import (
	"testing"
	"time"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/state"
)

// A revocation lasts as long as the longest-lived token it can cover, plus
// twice the leeway (exp may be a leeway past iat + max_lifetime, and is
// taken until a leeway past it): a guest's subject as long as its access tokens too.
func TestLifetimesCoverTheLongestTokenARevocationNames(t *testing.T) {
	cfg := &config.Config{}
	cfg.Tokens.Leeway = config.Duration(time.Minute)
	cfg.Tokens.Issuers = []config.TrustedIssuer{
		{Kind: "xbs_anonymous", Issuer: "idp"},
		{Kind: "xbs_anonymous", Issuer: "idp-2", MaxLifetime: config.Duration(2 * time.Hour)},
		{Kind: "guest", Issuer: "partner", MaxLifetime: config.Duration(time.Hour)},
		{Kind: "access", Issuer: "access"},
		{Kind: "secure_anonymous", Issuer: "sat", MaxLifetime: config.Duration(48 * time.Hour)},
	}
	l := Lifetimes(cfg)
	for _, c := range []struct {
		kind   state.Kind
		issuer string
		want   time.Duration
		ok     bool
	}{
		{state.RevokeToken, "", 48*time.Hour + 2*time.Minute, true},
		{state.RevokeSubject, "idp", time.Hour + 2*time.Minute, true},
		{state.RevokeSubject, "partner", 6*time.Hour + 2*time.Minute, true},
		{state.RevokeSubject, "sat", 48*time.Hour + 2*time.Minute, true},
		{state.RevokeSubject, "nobody", 0, false},
		{state.RevokeWidget, "", 2*time.Hour + 2*time.Minute, true},
	} {
		if got, ok := l.For(c.kind, c.issuer); got != c.want || ok != c.ok {
			t.Errorf("%s %q: %v %v, want %v %v", c.kind, c.issuer, got, ok, c.want, c.ok)
		}
	}
	if _, ok := Lifetimes(&config.Config{}).For(state.RevokeWidget, ""); ok {
		t.Error("a widget revocation without xbs_anonymous issuers was accepted")
	}
}
