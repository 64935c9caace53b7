package ext_authz

// The ownership effect: an allowed decision may name a channel and what
// the request needs of it, "ownership": {"channel": ..., "need": "claim" |
// "require"} (policies/README.md, "Ownership"). The policy keeps no state;
// guestgate applies the effect against its state store after evaluation
// and before it answers, on every request the decision covers, a cached
// decision included (the cache holds the effect, never its outcome).

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/guestgate/guestgate/state"
)

// What an ownership effect needs.
const (
	NeedClaim   = "claim"
	NeedRequire = "require"
)

// Reasons of an allow the ownership effect turned into a denial (403),
// besides ReasonStateUnavailable (503).
const (
	// ReasonChannelOwnedByAnother: a claim of a channel another visitor owns.
	ReasonChannelOwnedByAnother = "channel_owned_by_another"
	// ReasonChannelLimitReached: a claim by a visitor who owns as many
	// channels as state.ownership.max_channels allows.
	ReasonChannelLimitReached = "channel_limit_reached"
	// ReasonChannelNotOwned: a requirement of a channel this visitor does
	// not own (nobody does, or another visitor).
	ReasonChannelNotOwned = "channel_not_owned"
)

// OutcomeNotApplied is the outcome of an effect no store was asked about:
// guestgate check offline says what the request would need.
const OutcomeNotApplied = "not_applied"

// OutcomeUnavailable is the outcome of an effect the store could not answer.
const OutcomeUnavailable = "unavailable"

// Ownership is the effect a decision names: read only, shared by every
// answer of a cached decision.
type Ownership struct {
	Channel string `json:"channel"`
	Need    string `json:"need"` // NeedClaim or NeedRequire
}

// OwnershipAnswer is an effect and its outcome, as the decision endpoint
// and guestgate check show it.
type OwnershipAnswer struct {
	Ownership
	// Outcome is the store's answer (claimed, already_yours,
	// owned_by_another, over_limit, yours, not_owned, owned_by_other),
	// unavailable, or not_applied (guestgate check offline).
	Outcome string `json:"outcome"`
}

// OwnershipStore is what the check needs of the state store.
type OwnershipStore = state.Ownerships

// ownershipTerms are the keys of the ownership member, made once.
var ownershipTerms = struct{ channel, need *ast.Term }{ast.StringTerm("channel"), ast.StringTerm("need")}

// readOwnership reads decision.ownership: an object of exactly a non-empty
// string channel and a need, on an allow only.
func readOwnership(o ast.Object, allowed bool) (*Ownership, error) {
	t := o.Get(decisionKeyTerms["ownership"])
	if t == nil {
		return nil, nil
	}
	obj, ok := t.Value.(ast.Object)
	if !ok || obj.Len() != 2 {
		return nil, errors.New(`decision.ownership must be an object of "channel" and "need"`)
	}
	ch, _ := termString(obj.Get(ownershipTerms.channel))
	need, _ := termString(obj.Get(ownershipTerms.need))
	switch {
	case ch == "":
		return nil, errors.New("decision.ownership.channel must be a non-empty string")
	case need != NeedClaim && need != NeedRequire:
		return nil, fmt.Errorf("decision.ownership.need must be %q or %q", NeedClaim, NeedRequire)
	case !allowed:
		return nil, errors.New("decision.ownership is an effect of an allow; a denial names none")
	}
	return &Ownership{Channel: ch, Need: need}, nil
}

func termString(t *ast.Term) (string, bool) {
	if t == nil {
		return "", false
	}
	s, ok := t.Value.(ast.String)
	return string(s), ok
}

// applyOwnership resolves d's effect against the store: an allow stays an
// allow only when the claim or the requirement holds. The owner is the
// token's visitor: issuer, subject and widget (custom:wid).
func (c *Checker) applyOwnership(ctx context.Context, cs *compiled, d *Decision) {
	own := d.Ownership
	if c.ownerships == nil {
		if c.offline {
			d.OwnershipOutcome = OutcomeNotApplied
			return
		}
		c.logger.Warn("the decision needs a channel's ownership and no state store is configured (state:); denied",
			"request_id", d.RequestID, "need", own.Need)
		c.denyOwnership(d, http.StatusServiceUnavailable, ReasonStateUnavailable, OutcomeUnavailable)
		return
	}
	owner := state.Owner{Issuer: d.Issuer, Subject: d.Subject, Widget: d.widget}
	if owner.Issuer == "" || owner.Subject == "" || owner.Widget == "" {
		// Only a verified token's visitor of a widget can own a channel.
		c.logger.Warn("the decision needs a channel's ownership for a request without a widget visitor; denied",
			"request_id", d.RequestID, "revision", d.Revision)
		c.denyOwnership(d, http.StatusForbidden, ReasonInvalid, OutcomeUnavailable)
		return
	}
	var outcome fmt.Stringer
	var err error
	reason := ""
	switch own.Need {
	case NeedClaim:
		var o state.ClaimOutcome
		o, err = c.ownerships.Claim(ctx, own.Channel, owner, cs.ownership.idle, cs.ownership.maxChannels)
		outcome = o
		switch o {
		case state.OwnedByAnother:
			reason = ReasonChannelOwnedByAnother
		case state.OverLimit:
			reason = ReasonChannelLimitReached
		}
	default:
		var o state.RequireOutcome
		o, err = c.ownerships.Require(ctx, own.Channel, owner, cs.ownership.idle)
		outcome = o
		if o == state.NotOwned || o == state.OwnedByOther {
			reason = ReasonChannelNotOwned
		}
	}
	switch {
	case errors.Is(err, state.ErrInvalid):
		// A channel id the store cannot keep (over state.MaxKeyBytes).
		c.denyOwnership(d, http.StatusBadRequest, ReasonBadRequest, OutcomeUnavailable)
	case err != nil:
		c.logger.Warn("state store did not answer an ownership; denied", "request_id", d.RequestID, "need", own.Need, "error", err)
		c.denyOwnership(d, http.StatusServiceUnavailable, ReasonStateUnavailable, OutcomeUnavailable)
	case reason != "":
		c.denyOwnership(d, http.StatusForbidden, reason, outcome.String())
	default:
		d.OwnershipOutcome = outcome.String()
	}
}

// denyOwnership turns the allow into a denial: nothing of the allow, the
// policy's headers and body included, reaches the client.
func (c *Checker) denyOwnership(d *Decision, status int, reason, outcome string) {
	d.deny(status, reason)
	d.DenyHeaders, d.DenyBody, d.denyOpts = nil, "", nil
	d.OwnershipOutcome = outcome
}
