package ext_authz

import (
	"context"
	"errors"
	"net/http"

	"github.com/guestgate/guestgate/engine"
)

// evaluate asks the policy revision the input was planned for (in.need)
// for its decision. When every part of the input can be built on demand,
// the revision's decision cache builds only the parts its key reads, and
// the whole document only when the policy runs; otherwise a full
// input.attributes, whose conversion may fail, is built first, so that a
// failure denies before the policy decides. On any failure d is a denial
// and ok is false; on success the result is defined.
func (c *Checker) evaluate(ctx context.Context, in *inputDoc, d *Decision) (res engine.Result, ok bool) {
	rev := in.need.rev
	var err error
	if in.need.lazy() {
		res, err = rev.EvalInput(ctx, in, in.tok)
	} else if input := in.Value(); in.r.problem == "" {
		res, err = rev.Eval(ctx, input, in.tok)
	}
	if in.r.problem != "" {
		// A part of the input the policy reads could not be built (no
		// lazy part finds a problem; should one ever, it denies too).
		c.logger.Warn("input cannot be built; denied", "request_id", d.RequestID, "detail", in.r.detail)
		d.deny(http.StatusBadRequest, in.r.problem)
		d.refusedOPAEnvoy(in.need.format, in.r.detail)
		return res, false
	}
	d.Revision = res.Revision
	switch {
	case err != nil && errors.Is(ctx.Err(), context.Canceled):
		// The caller went away: under load every client that hangs up
		// ends here, which is not a broken policy.
		c.logger.Debug("check canceled by its caller; denied", "request_id", d.RequestID, "revision", res.Revision)
		d.deny(StatusClientClosed, ReasonCanceled)
		return res, false
	case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		c.logger.Info("check past its caller's deadline; denied", "request_id", d.RequestID, "revision", res.Revision)
		d.deny(http.StatusGatewayTimeout, ReasonDeadline)
		return res, false
	case err != nil:
		c.logger.Warn("policy evaluation failed; denied", "request_id", d.RequestID, "revision", res.Revision, "error", err)
		d.deny(http.StatusForbidden, ReasonPolicyError)
		return res, false
	case !res.Defined || res.Value == nil:
		d.deny(http.StatusForbidden, ReasonUndefined)
		return res, false
	}
	return res, true
}
