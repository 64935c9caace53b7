package ext_authz

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/guestgate/guestgate/engine"
)

// InspectOptions say what Inspect adds to a decision.
type InspectOptions struct {
	// Explain adds why the policies decided: OPA's trace of a second
	// evaluation, condensed (engine.Explanation). It costs a traced
	// evaluation: tools only, never the serving path.
	Explain bool
	// Input adds the input document.
	Input bool
}

// Inspection is one check with what an operator asks of it besides the
// answer.
type Inspection struct {
	// Decision is the check's answer, as Decide gives it.
	Decision *Decision
	// Shadow is the shadow policy's answer to the same request; nil
	// without a shadow policy, or when the check was denied before any
	// policy ran (NoPolicyRan).
	Shadow *Decision
	// NoPolicyRan says guestgate denied before a policy decided (a bad
	// path, no policy loaded): there is nothing to shadow or explain.
	NoPolicyRan bool
	// Input is the input document (JSON) with every part, as a policy
	// that reads all of it sees it: the credential redacted unless
	// check.show_credential_to_policy. (A policy is handed only the parts
	// it can read; the rest cannot change its answer.)
	Input any
	// Explanation is why the live policy decided, ShadowExplanation why
	// the shadow did, each of the Input above.
	Explanation, ShadowExplanation *engine.Explanation
	// ExplainError says why an explanation asked for is missing.
	ExplainError string

	opts InspectOptions
}

// Agrees says whether the shadow gave the live answer: the same allowed,
// status and reason. False without a shadow answer.
func (insp *Inspection) Agrees() bool {
	return insp.Shadow != nil && answerOf(insp.Decision, engine.Snapshot{}).agrees(answerOf(insp.Shadow, engine.Snapshot{}))
}

// Inspect decides cr as Decide does (the same settings, policy, decision
// log and metrics) and adds, for an operator: the shadow policy's answer
// (decided now, counted and logged like every shadowed check) and, as
// asked, the input document and why each policy decided.
func (c *Checker) Inspect(ctx context.Context, cr *authv3.CheckRequest, o InspectOptions) *Inspection {
	insp := &Inspection{opts: o}
	insp.Decision = c.decideInspected(ctx, cr, false, insp)
	return insp
}

// inspect fills insp once the live decision d is settled; in is its input,
// nil when no policy ran.
func (c *Checker) inspect(ctx context.Context, insp *Inspection, in *inputDoc, cs *compiled, d *Decision) {
	if in == nil {
		insp.NoPolicyRan = true
		if insp.opts.Explain || insp.opts.Input {
			insp.ExplainError = "guestgate denied before any policy decided (" + d.Reason + "): there is nothing to explain"
		}
		return
	}
	sh := c.shadow.Load()
	if sh != nil {
		s := c.shadowDecide(ctx, sh, in, cs)
		s.Kind, s.Issuer, s.Subject = d.Kind, d.Issuer, d.Subject
		insp.Shadow = s
		c.shadowCompare(sh, in, answerOf(d, in.need.rev), s)
	}
	if !insp.opts.Explain && !insp.opts.Input {
		return
	}
	r := *in.r
	full := &inputDoc{r: &r, token: in.token, tok: in.tok, tokErr: in.tokErr, id: in.id, showCredential: in.showCredential,
		need: newInputPlan(engine.Snapshot{}, in.need.format)} // the zero Snapshot reads everything
	if in.token != nil {
		full.tok = tokenInput(in.token, full.need.claims) // every claim
	}
	doc := full.Value()
	if r.problem != "" {
		insp.ExplainError = "the whole input document cannot be built: " + r.detail
		return
	}
	if insp.opts.Input {
		insp.Input, _ = ast.JSON(doc)
	}
	if !insp.opts.Explain {
		return
	}
	var err error
	if _, insp.Explanation, err = in.need.rev.Explain(ctx, doc); err != nil {
		insp.ExplainError = err.Error()
	}
	if sh != nil {
		if _, insp.ShadowExplanation, err = sh.eng.Current().Explain(ctx, doc); err != nil && insp.ExplainError == "" {
			insp.ExplainError = "shadow: " + err.Error()
		}
	}
}
