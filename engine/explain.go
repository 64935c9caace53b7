package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Why a policy decided what it did, for a policy author: OPA's trace of one
// evaluation condensed to the chain of the policy's own rules that decided.
//
// The chain starts at the decision rule's body that produced the answer and
// follows, from each rule that held, the rules it read: a rule that held
// gives its value (and the conditions that held), a rule that had no value
// (the `not` of it decided) gives the expression that failed. Each step
// names the data documents it read, with their values. Rules that were
// tried and failed on the way (the earlier lines of an else chain) are not
// steps: they did not decide.
//
// cost: the trace records every expression of the evaluation, hundreds of
// events for the shipped policy; Explain is for the check tool and the
// decision endpoint, never the serving path.

// MaxExplainSteps bounds an explanation's chain.
const MaxExplainSteps = 64

// maxShownValue bounds the JSON of a value an explanation shows (a data
// document may be a whole registry).
const maxShownValue = 2048

// Explanation is why one evaluation decided what it did.
type Explanation struct {
	// Query is the decision asked for, Revision the policy revision that
	// answered.
	Query    string `json:"query"`
	Revision string `json:"revision"`
	// Defined is false when the policy gave no decision; Result is the
	// decision (JSON) when it did.
	Defined bool `json:"defined"`
	Result  any  `json:"result,omitempty"`
	// Steps is the chain of rules that decided, the decision rule first;
	// each step's Depth says which step above it read it.
	Steps []Step `json:"steps"`
	// Truncated says the chain was longer than MaxExplainSteps.
	Truncated bool `json:"truncated,omitempty"`
}

// Step is one rule of the chain.
type Step struct {
	// File and Line are where the rule's body that applied (or failed)
	// is written, File relative to the policy directory.
	File string `json:"file"`
	Line int    `json:"line"`
	// Rule is the document the rule defines (data.guestgate.anonymous.reason).
	Rule string `json:"rule"`
	// Depth is 0 for the decision, and one more than the step that read
	// this rule.
	Depth int `json:"depth"`
	// Outcome is "value" (the body held: Value is what the rule gave) or
	// "undefined" (it failed: Expr is the expression that failed).
	Outcome string `json:"outcome"`
	Value   any    `json:"value,omitempty"`
	// Expr is the source of the conditions that held, or of the
	// expression that failed.
	Expr string `json:"expr,omitempty"`
	// Evaluated is the failed expression as OPA evaluated it, with the
	// values it had (compiled form: `in` is internal.member_2, == is =).
	Evaluated string `json:"evaluated,omitempty"`
	// NotEvaluated says the body was never run: OPA's rule index found
	// from the input alone that it cannot hold (Expr is then its source).
	NotEvaluated bool `json:"not_evaluated,omitempty"`
	// Data are the data documents the body read, in order.
	Data []DataRead `json:"data,omitempty"`
}

// DataRead is one data document a step read.
type DataRead struct {
	// Ref is the document, with the keys it was read at
	// (data.registry.widgets["W-OFF"]).
	Ref string `json:"ref"`
	// Defined is false when the data holds nothing there.
	Defined bool `json:"defined"`
	// Value is the document (JSON), left out when larger than a couple
	// of KiB (Truncated).
	Value     any  `json:"value,omitempty"`
	Truncated bool `json:"truncated,omitempty"`
}

// Outcomes of a Step.
const (
	OutcomeValue     = "value"
	OutcomeUndefined = "undefined"
)

// Explain evaluates input against this snapshot's revision as Eval does,
// but past the decision cache and with OPA's tracer on, and returns the
// answer with why it was given. The answer is the one Eval gives.
func (s Snapshot) Explain(ctx context.Context, input ast.Value) (Result, *Explanation, error) {
	e, p := s.e, s.p
	if p == nil {
		return Result{}, nil, errors.New("engine: no policy loaded (use New)")
	}
	buf := topdown.NewBufferTracer()
	res, err := e.evalOPA(ctx, p, input, rego.EvalQueryTracer(buf))
	if err != nil {
		return res, nil, err
	}
	x := &Explanation{Query: e.query.String(), Revision: p.revision, Defined: res.Defined, Steps: []Step{}}
	if res.Defined {
		x.Result, _ = shownValue(res.Value)
	}
	newChain(*buf, p).explain(x, e.query)
	return res, x, nil
}

// query is one query of the trace: a rule's body, or a query inside one
// (a negation, a comprehension), whose events count as that body's.
type query struct {
	parent uint64
	rule   *ast.Rule // nil for a query that is not a rule's body
	enter  *topdown.Event
	exit   *topdown.Event // the body held: its Exit
	fails  []*topdown.Event
}

// chain reads a trace into the queries of rule bodies and walks the chain.
type chain struct {
	events  []*topdown.Event
	queries map[uint64]*query
	// byRule lists the evaluations (rule body queries) of each rule
	// document, in trace order.
	byRule map[string][]uint64
	p      *policy
	seen   map[uint64]bool
	steps  []Step
	full   bool
}

func newChain(events []*topdown.Event, p *policy) *chain {
	c := &chain{events: events, queries: map[uint64]*query{}, byRule: map[string][]uint64{}, p: p, seen: map[uint64]bool{}}
	for _, ev := range events {
		q := c.queries[ev.QueryID]
		if q == nil {
			q = &query{parent: ev.ParentID}
			c.queries[ev.QueryID] = q
		}
		switch ev.Op {
		case topdown.EnterOp:
			if q.enter == nil {
				q.enter = ev
				if r, ok := ev.Node.(*ast.Rule); ok && r.Module != nil {
					q.rule = r
					path := rulePath(r)
					c.byRule[path] = append(c.byRule[path], ev.QueryID)
				}
			}
		case topdown.ExitOp:
			if q.rule != nil && ev.HasRule() {
				q.exit = ev
			}
		case topdown.FailOp:
			if ev.HasExpr() {
				q.fails = append(q.fails, ev)
			}
		}
	}
	return c
}

// owner is the rule body query id is nested in (id itself for a rule
// body, 0 for the decision query).
func (c *chain) owner(id uint64) uint64 {
	for range len(c.queries) {
		q := c.queries[id]
		if q == nil || q.rule != nil || q.parent == id {
			return id
		}
		id = q.parent
	}
	return id
}

// ownedEvals are the Eval events of rule body id and of the queries
// nested in it that are not rule bodies, in trace order.
func (c *chain) ownedEvals(id uint64) []*topdown.Event {
	var out []*topdown.Event
	for _, ev := range c.events {
		if ev.Op == topdown.EvalOp && c.owner(ev.QueryID) == id {
			out = append(out, ev)
		}
	}
	return out
}

// rulePath is the document a rule defines, without the variables of a
// partial rule's key.
func rulePath(r *ast.Rule) string { return r.Ref().GroundPrefix().String() }

// explain fills x's steps, starting from the decision rule's body that
// held.
func (c *chain) explain(x *Explanation, q ast.Ref) {
	root := c.rulePathOf(q)
	for _, id := range c.byRule[root] {
		if c.queries[id].exit != nil {
			c.visit(id, 0)
			break
		}
	}
	if len(c.steps) == 0 && root != "" {
		// No body held: the decision is undefined or a default.
		c.visitRule(root, 0, 0)
	}
	x.Steps, x.Truncated = append(x.Steps, c.steps...), c.full
}

// visit adds the step of rule body id and, below it, the rules it read.
func (c *chain) visit(id uint64, depth int) {
	if c.seen[id] {
		return
	}
	if len(c.steps) >= MaxExplainSteps {
		c.full = true
		return
	}
	c.seen[id] = true
	q := c.queries[id]
	st := Step{Rule: rulePath(q.rule), Depth: depth}
	if loc := q.enter.Location; loc != nil {
		st.File, st.Line = loc.File, loc.Row
	}
	evals := c.ownedEvals(id)
	if q.exit != nil {
		st.Outcome = OutcomeValue
		st.Value = headValue(q.rule, q.exit)
		st.Expr = conditions(q.rule, evals)
	} else {
		st.Outcome = OutcomeUndefined
		if n := len(q.fails); n > 0 {
			f := q.fails[n-1]
			st.Expr = sourceText(f)
			st.Evaluated = clip(plug(f.Node.(*ast.Expr), f.Locals).String(), 240)
		}
	}
	var rules []string
	seenRef := map[string]bool{}
	for _, ev := range evals {
		for _, ref := range refsOf(ev.Node) {
			if !ref.HasPrefix(ast.DefaultRootRef) {
				continue
			}
			if path := c.rulePathOf(ref); path != "" {
				if !seenRef[path] && path != st.Rule {
					seenRef[path] = true
					rules = append(rules, path)
				}
				continue
			}
			read := c.dataRead(plugRef(ref, ev.Locals))
			if !seenRef[read.Ref] {
				seenRef[read.Ref] = true
				st.Data = append(st.Data, read)
			}
		}
	}
	c.steps = append(c.steps, st)
	for _, path := range rules {
		c.visitRule(path, id, depth+1)
	}
}

// visitRule adds the evaluations of the rule document path that the rule
// body from read: the ones nested in it (or, when its value came from
// topdown's cache, the first that held), else every one that failed.
func (c *chain) visitRule(path string, from uint64, depth int) {
	var held, failed []uint64
	for _, id := range c.byRule[path] {
		q := c.queries[id]
		if from != 0 && !c.within(id, from) {
			continue
		}
		if q.exit != nil {
			held = append(held, id)
		} else {
			failed = append(failed, id)
		}
	}
	if len(held) == 0 {
		for _, id := range c.byRule[path] {
			if c.queries[id].exit != nil {
				held = append(held, id)
				break
			}
		}
	}
	next := held
	if len(next) == 0 {
		next = failed
	}
	for _, id := range next {
		c.visit(id, depth)
	}
	if len(c.byRule[path]) == 0 {
		c.unevaluated(path, depth)
	}
}

// unevaluated adds a step for each body of the rule document path, none of
// which ran: OPA's rule index ruled them all out from the input.
func (c *chain) unevaluated(path string, depth int) {
	ref, err := ast.ParseRef(path)
	if err != nil {
		return
	}
	for _, r := range c.p.compiler.GetRulesExact(ref) {
		for ; r != nil; r = r.Else {
			if len(c.steps) >= MaxExplainSteps {
				c.full = true
				return
			}
			st := Step{Rule: path, Depth: depth, Outcome: OutcomeUndefined, NotEvaluated: true}
			if r.Location != nil {
				st.File, st.Line = r.Location.File, r.Location.Row
			}
			var texts []string
			for _, expr := range r.Body {
				if expr.Location != nil && len(expr.Location.Text) > 0 && (r.Location == nil || expr.Location.Offset != r.Location.Offset) {
					texts = append(texts, string(expr.Location.Text))
				}
			}
			st.Expr = strings.Join(texts, "; ")
			c.steps = append(c.steps, st)
		}
	}
}

// within says whether query id is nested (at any depth) in query from.
func (c *chain) within(id, from uint64) bool {
	for n := 0; n < len(c.queries); n++ {
		q := c.queries[id]
		if q == nil || q.parent == id {
			return false
		}
		if q.parent == from {
			return true
		}
		id = q.parent
	}
	return false
}

// rulePathOf is the longest prefix of ref that a rule of the revision
// defines, or "" when none does (ref is data, or nothing).
func (c *chain) rulePathOf(ref ast.Ref) string {
	comp := c.p.compiler
	for n := len(ref); n >= 2; n-- {
		prefix := ref[:n]
		if !prefix.IsGround() {
			continue
		}
		if len(comp.GetRulesExact(prefix)) > 0 {
			return prefix.String()
		}
	}
	return ""
}

// dataRead looks ref up in the revision's data.
func (c *chain) dataRead(ref ast.Ref) DataRead {
	read := DataRead{Ref: ref.String()}
	if !ref.IsGround() {
		return read
	}
	v, err := c.p.dataCache.root.Find(ref[1:])
	if err != nil {
		return read
	}
	read.Defined = true
	read.Value, read.Truncated = shownValue(v)
	return read
}

// headValue is the value a rule body that held gave: its head's value (or
// key, for a partial set), with the body's bindings; true for a rule
// without one.
func headValue(r *ast.Rule, exit *topdown.Event) any {
	t := r.Head.Value
	if t == nil {
		t = r.Head.Key
	}
	if t == nil {
		return true
	}
	v := plugTerm(t, exit.Locals)
	if !v.IsGround() {
		return v.String()
	}
	shown, _ := shownValue(v.Value)
	return shown
}

// conditions is the source of the expressions of a body that held, less
// those that compute its head's value and those nested in another.
func conditions(r *ast.Rule, evals []*topdown.Event) string {
	type span struct {
		file       string
		start, end int
		text       string
	}
	locOf := func(l *ast.Location) (span, bool) {
		if l == nil || len(l.Text) == 0 {
			return span{}, false
		}
		return span{l.File, l.Offset, l.Offset + len(l.Text), string(l.Text)}, true
	}
	var head span
	if r.Head.Value != nil {
		head, _ = locOf(r.Head.Value.Location)
	}
	inside := func(a, b span) bool { return a.file == b.file && a.start >= b.start && a.end <= b.end }
	var spans []span
	for _, ev := range evals {
		s, ok := locOf(ev.Location)
		// A body written without conditions is "true" at the rule's own
		// location.
		if !ok || head.text != "" && inside(s, head) || r.Location != nil && s.start == r.Location.Offset {
			continue
		}
		spans = append(spans, s)
	}
	var texts []string
	for i, s := range spans {
		nested := false
		for j, o := range spans {
			if i != j && inside(s, o) && (s != o || j < i) {
				nested = true
				break
			}
		}
		if !nested {
			texts = append(texts, s.text)
		}
	}
	return strings.Join(texts, "; ")
}

// sourceText is the source of the expression an event is about.
func sourceText(ev *topdown.Event) string {
	if ev.Location != nil && len(ev.Location.Text) > 0 {
		return string(ev.Location.Text)
	}
	return fmt.Sprint(ev.Node)
}

// refsOf are the references an expression holds, outermost first.
func refsOf(n ast.Node) []ast.Ref {
	var refs []ast.Ref
	ast.WalkRefs(n, func(r ast.Ref) bool {
		refs = append(refs, r)
		return false
	})
	return refs
}

// plug replaces the variables of x that are bound in locals by their
// values.
func plug(x *ast.Expr, locals *ast.ValueMap) *ast.Expr {
	out, err := ast.TransformVars(x.Copy(), func(v ast.Var) (ast.Value, error) {
		if locals != nil {
			if val := locals.Get(v); val != nil {
				return val, nil
			}
		}
		return v, nil
	})
	if err != nil {
		return x
	}
	return out.(*ast.Expr)
}

func plugTerm(t *ast.Term, locals *ast.ValueMap) *ast.Term {
	out, err := ast.TransformVars(t.Copy(), func(v ast.Var) (ast.Value, error) {
		if locals != nil {
			if val := locals.Get(v); val != nil {
				return val, nil
			}
		}
		return v, nil
	})
	switch out := out.(type) {
	case *ast.Term:
		return out
	case ast.Value:
		if err == nil {
			return ast.NewTerm(out)
		}
	}
	return t
}

func plugRef(ref ast.Ref, locals *ast.ValueMap) ast.Ref {
	out := make(ast.Ref, len(ref))
	for i, t := range ref {
		out[i] = t
		if v, ok := t.Value.(ast.Var); ok && i > 0 && locals != nil {
			if val := locals.Get(v); val != nil {
				out[i] = ast.NewTerm(val)
			}
		}
	}
	return out
}

// shownValue is v as JSON, or nil and true when that is larger than
// maxShownValue.
func shownValue(v ast.Value) (any, bool) {
	if len(v.String()) > maxShownValue {
		return nil, true
	}
	j, err := ast.JSON(v)
	if err != nil {
		return v.String(), false
	}
	return j, false
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
