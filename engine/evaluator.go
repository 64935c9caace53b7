package engine

import (
	"context"
	"fmt"

	"github.com/guestgate/guestgate/engine/plan"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// The evaluators a revision can be served by (Options.Evaluator).
const (
	// EvaluatorPlan evaluates OPA's compiled plan of the decision query
	// (package plan), and asks topdown whenever the plan evaluator cannot
	// answer. The default.
	EvaluatorPlan = "plan"
	// EvaluatorOPA evaluates every decision with OPA's topdown evaluator.
	EvaluatorOPA = "opa"
)

// preparePlan prepares the plan evaluator for a revision when the engine
// uses it, and says which evaluator serves the revision and, if that is
// topdown although the plan was asked for, why: a revision whose plan the
// plan evaluator does not handle (a built-in outside its set, say) is
// served by topdown, whole.
func preparePlan(ctx context.Context, evaluator string, compiler *ast.Compiler, query ast.Ref, store storage.Store, txn storage.Transaction, data ast.Value) (*plan.Plan, string) {
	if evaluator == EvaluatorOPA {
		return nil, EvaluatorOPA
	}
	p, err := plan.Prepare(ctx, compiler, query, store, txn, data)
	if err != nil {
		return nil, EvaluatorOPA + " (" + err.Error() + ")"
	}
	return p, EvaluatorPlan
}

// evaluate evaluates the decision query for input with the revision's
// evaluator. An evaluation the plan evaluator does not finish (a conflict
// between rule values, a built-in that halts) is evaluated again by
// topdown, whose answer or error is OPA's own; it is counted through
// Options.OnPlanFallback.
func (e *Engine) evaluate(ctx context.Context, p *policy, input ast.Value) (Result, error) {
	if p.plan == nil {
		return e.evalOPA(ctx, p, input)
	}
	v, defined, err := p.plan.Eval(ctx, input)
	if err == nil {
		return Result{Revision: p.revision, Value: v, Defined: defined}, nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return Result{Revision: p.revision}, fmt.Errorf("engine: evaluating %s: %w", e.query, ctxErr)
	}
	if e.onFallback != nil {
		e.onFallback(err)
	}
	return e.evalOPA(ctx, p, input)
}

// evalOPA evaluates the decision query with OPA; extra are further
// evaluation options (Explain's tracer).
func (e *Engine) evalOPA(ctx context.Context, p *policy, input ast.Value, extra ...rego.EvalOption) (Result, error) {
	res := Result{Revision: p.revision}

	// topdown would otherwise start a goroutine per evaluation to watch ctx;
	// context.AfterFunc registers a callback instead, which is much cheaper.
	cancel := topdown.NewCancel()
	stop := context.AfterFunc(ctx, cancel.Cancel)
	defer stop()

	// The caches topdown keeps during the evaluation (evalcache.go): the
	// revision's data, shared, and a pooled rule cache, both cheaper than the
	// ones topdown would allocate afresh.
	rules := getRuleCache()
	defer rules.release()

	opts := make([]rego.EvalOption, 0, len(p.evalOpts)+3+len(extra))
	opts = append(opts, p.evalOpts...)
	opts = append(opts,
		rego.EvalParsedInput(input),
		rego.EvalExternalCancel(cancel),
		rego.EvalVirtualCache(rules))
	rs, err := p.query.Eval(ctx, append(opts, extra...)...)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return res, fmt.Errorf("engine: evaluating %s: %w", e.query, ctxErr)
		}
		return res, fmt.Errorf("engine: evaluating %s: %w", e.query, err)
	}
	switch len(rs) {
	case 0:
		return res, nil
	case 1:
	default:
		// A reference query yields at most one result; fail closed on
		// anything else rather than pick one.
		return res, fmt.Errorf("engine: evaluating %s: %d results, want at most one", e.query, len(rs))
	}
	if len(rs[0].Expressions) != 1 {
		return res, fmt.Errorf("engine: evaluating %s: %d expressions, want one", e.query, len(rs[0].Expressions))
	}
	v, ok := rs[0].Expressions[0].Value.(ast.Value)
	if !ok {
		return res, fmt.Errorf("engine: evaluating %s: result is %T, not an AST value", e.query, rs[0].Expressions[0].Value)
	}
	res.Value, res.Defined = v, true
	return res, nil
}
