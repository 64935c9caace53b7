package wiring

import (
	"time"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/state"
	"github.com/guestgate/guestgate/tokens"
)

// TokenLifetimes is how long the tokens a revocation covers may still be
// valid, from the trusted issuers of a config: each entry's max_lifetime
// (or its kind's default) plus twice the leeway, as the verifier takes a
// token whose exp is up to the leeway past iat + max_lifetime, and takes
// it until the leeway past its exp (tokens'
// TestLatestVerifyingInstantOfATokenMintedByT). A revocation ends when the last
// token it covers would have, so the deny-list never grows without bound
// and never lets a covered token through.
type TokenLifetimes struct {
	any      time.Duration            // the longest of every entry: a jti may be any issuer's
	byIssuer map[string]time.Duration // an issuer's subjects
	widget   time.Duration            // xbs_anonymous entries: a widget's tokens
}

// Lifetimes reads cfg's trusted issuers.
func Lifetimes(cfg *config.Config) TokenLifetimes {
	l := TokenLifetimes{byIssuer: map[string]time.Duration{}}
	leeway := cfg.Tokens.Leeway.D()
	var access time.Duration
	for _, ti := range cfg.Tokens.Issuers {
		d := ti.MaxLifetime.D()
		if d == 0 {
			d = tokens.DefaultMaxLifetime(tokens.Kind(ti.Kind))
		}
		d += 2 * leeway
		l.any = max(l.any, d)
		l.byIssuer[ti.Issuer] = max(l.byIssuer[ti.Issuer], d)
		switch tokens.Kind(ti.Kind) {
		case tokens.KindXBSAnonymous:
			l.widget = max(l.widget, d)
		case tokens.KindAccess:
			access = max(access, d)
		}
	}
	// A guest's access tokens are checked by the guest's subject of its
	// guest issuer too (ext_authz): the entry outlasts the last of them.
	for _, ti := range cfg.Tokens.Issuers {
		if tokens.Kind(ti.Kind) == tokens.KindGuest {
			l.byIssuer[ti.Issuer] = max(l.byIssuer[ti.Issuer], access)
		}
	}
	return l
}

// For is how long a revocation of kind (and, for a subject, of issuer)
// stays in force; false when no trusted issuer's tokens could be covered
// (an issuer not configured, a widget without xbs_anonymous issuers).
func (l TokenLifetimes) For(kind state.Kind, issuer string) (time.Duration, bool) {
	var d time.Duration
	switch kind {
	case state.RevokeToken:
		d = l.any
	case state.RevokeSubject:
		d = l.byIssuer[issuer]
	case state.RevokeWidget:
		d = l.widget
	}
	return d, d > 0
}
