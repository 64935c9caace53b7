package ext_authz

import (
	"context"
	"net/http"

	"github.com/guestgate/guestgate/state"
	"github.com/guestgate/guestgate/tokens"
)

// revoked checks a verified token against the deny-list: its jti, its
// subject of its issuer, its widget, and, for an access token, the guest it
// was minted for (the guest's subject of its guest issuer), so that
// revoking a guest refuses the access tokens it already holds.
//
// The answer is read from the store's local snapshot, with no round trip:
// on Redis it is at most the store's stale bound old, and when the snapshot
// is older than that the store errs and the check denies state_unavailable
// (503) rather than answer from what it cannot vouch for. A revocation is
// so delayed by at most the bound, and never lost.
//
// It returns revoked, or ok false when d was denied state_unavailable.
func (c *Checker) revoked(ctx context.Context, tok *tokens.Token, d *Decision) (revoked, ok bool) {
	if c.revocations == nil {
		return false, true
	}
	refs := [2]state.TokenRef{{ID: tok.ID, Issuer: tok.Issuer, Subject: tok.Subject, Widget: tok.Widget}}
	if tok.Kind == tokens.KindAccess {
		refs[1] = state.TokenRef{Issuer: tok.GuestIssuer, Subject: tok.GuestSubject}
	}
	for _, ref := range refs {
		hit, err := c.revocations.Revoked(ctx, ref)
		if err != nil {
			c.logger.Warn("revocations unavailable; denied", "request_id", d.RequestID, "error", err)
			d.deny(http.StatusServiceUnavailable, ReasonStateUnavailable)
			return false, false
		}
		if hit {
			return true, true
		}
	}
	return false, true
}
