package engine

import (
	"cmp"
	"maps"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The static analysis behind the decision cache and input pruning: which
// parts of its input a compiled policy can read (each reference to input
// contributes its leading string keys), narrowed by the token's kind where
// rule bodies require one, and whether its answer could differ for the same
// input.

// clockBuiltins read the evaluation's clock though OPA does not mark them
// non-deterministic; print and trace have effects a cached answer would
// skip (print statements are compiled out unless enabled, but a future
// change enabling them must not be silently cached).
var clockBuiltins = map[string]bool{
	"io.jwt.decode_verify":                                   true,
	"crypto.x509.parse_and_verify_certificates":              true,
	"crypto.x509.parse_and_verify_certificates_with_options": true,
	"print":          true,
	"internal.print": true,
	"trace":          true,
}

// inputReads is what a compiled policy can read of its input.
type inputReads struct {
	// whole is why the policy may read any part of input ("" when it reads
	// only paths): it uses input as a whole or under a computed key.
	whole string
	// paths are the minimal set of key paths under input the policy refers
	// to: none is a prefix of another. Meaningless when whole is set.
	paths [][]*ast.Term
	// nondet names a built-in the policy calls whose answer could differ
	// for the same input ("" when none).
	nondet string
	// byKind narrows paths for an input whose input.token.kind is a
	// string: the paths to key on for each kind some rule requires, and
	// otherKinds for any other (see analyseKinds). Nil when not narrowed.
	byKind     map[string][][]*ast.Term
	otherKinds [][]*ast.Term
	// claims is what the policy can read of input.token.claims (claims.go).
	claims claimReads
}

// keyPaths returns the paths to key input on: narrowed by the token's kind
// when there is one (narrowed, with the kind), else every path.
func (r *inputReads) keyPaths(top func(*ast.Term) *ast.Term) (paths [][]*ast.Term, kind ast.String, narrowed bool) {
	if r.byKind == nil || top == nil {
		return r.paths, "", false
	}
	tok := top(keyToken)
	if tok == nil {
		return r.paths, "", false
	}
	obj, ok := tok.Value.(ast.Object)
	if !ok {
		return r.paths, "", false
	}
	k := obj.Get(keyKind)
	if k == nil {
		return r.paths, "", false
	}
	if kind, ok = k.Value.(ast.String); !ok {
		return r.paths, "", false
	}
	if paths, ok := r.byKind[string(kind)]; ok {
		return paths, kind, true
	}
	return r.otherKinds, kind, true
}

var (
	keyToken = ast.StringTerm("token")
	keyKind  = ast.StringTerm("kind")
)

// off says why decisions of this policy may not be cached ("" when they
// may).
func (r *inputReads) off() string {
	switch {
	case r.whole != "":
		return r.whole
	case r.nondet != "":
		return "the policy calls " + r.nondet
	}
	return ""
}

// reads reports whether the policy may read input at path or under it.
func (r *inputReads) reads(path []string) bool {
	if r.whole != "" {
		return true
	}
	for _, p := range r.paths {
		n := min(len(p), len(path))
		same := true
		for i := range n {
			if string(p[i].Value.(ast.String)) != path[i] {
				same = false
				break
			}
		}
		if same {
			return true
		}
	}
	return false
}

// analyseInput walks the decision query and every rule of the compiled
// modules: a configured query may itself read input (data.x[input.y]).
func analyseInput(c *ast.Compiler, query ast.Ref) inputReads {
	rc := newReadCollector(nil)
	rc.vis.Walk(query)
	for _, name := range slices.Sorted(maps.Keys(c.Modules)) {
		for _, rule := range c.Modules[name].Rules {
			rc.vis.Walk(rule)
		}
	}
	r := inputReads{whole: rc.whole, nondet: rc.nondet, claims: analyseClaims(c, query)}
	if r.whole != "" {
		return r
	}
	r.paths = rc.minimal()
	r.byKind, r.otherKinds = analyseKinds(c, query)
	return r
}

// readCollector gathers the input paths a walk meets.
type readCollector struct {
	whole, nondet string
	paths         [][]*ast.Term
	with          bool // an expression with a with modifier was met
	vis           *ast.GenericVisitor
}

// newReadCollector returns a collector that also calls onData, when not
// nil, with each reference under data it meets.
func newReadCollector(onData func(ast.Ref)) *readCollector {
	rc := &readCollector{}
	rc.vis = ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.Expr:
			if len(x.With) > 0 {
				rc.with = true
			}
		case ast.Ref:
			if name := x.String(); rc.nondet == "" {
				if b, ok := ast.BuiltinMap[name]; ok && (b.Nondeterministic || clockBuiltins[name]) {
					rc.nondet = name
				}
			}
			if onData != nil && x[0].Equal(ast.DefaultRootDocument) {
				onData(x)
			}
			if !x[0].Equal(ast.InputRootDocument) {
				return false
			}
			var p []*ast.Term
			for _, t := range x[1:] {
				if _, ok := t.Value.(ast.String); !ok {
					break
				}
				p = append(p, t)
			}
			switch {
			case len(x) == 1:
				// The compiler turns a bare input into a one-term ref.
				rc.whole = cmp.Or(rc.whole, "the policy uses input as a whole")
			case len(p) == 0:
				rc.whole = cmp.Or(rc.whole, "the policy reads input under a computed key")
			}
			rc.paths = append(rc.paths, p)
			// The keys that are not strings may themselves read input.
			for _, t := range x[1:] {
				rc.vis.Walk(t)
			}
			return true
		case ast.Var:
			// Any other form of a bare input.
			if x.Equal(ast.InputRootDocument.Value) {
				rc.whole = cmp.Or(rc.whole, "the policy uses input as a whole")
			}
		}
		return false
	})
	return rc
}

// minimal is the collected paths less those under another.
func (rc *readCollector) minimal() [][]*ast.Term {
	paths := slices.Clone(rc.paths)
	slices.SortFunc(paths, func(a, b []*ast.Term) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return ast.Ref(a).Compare(ast.Ref(b))
	})
	var out [][]*ast.Term
	for _, p := range paths {
		if !slices.ContainsFunc(out, func(q []*ast.Term) bool { return ast.Ref(p).HasPrefix(ast.Ref(q)) }) {
			out = append(out, p)
		}
	}
	return out
}

// tokenKindRef is what guestgate's policies dispatch on: the verified
// token's kind.
var tokenKindRef = ast.MustParseRef("input.token.kind")

// kindGuard returns the kind a rule body's expression requires, when it
// is input.token.kind == "<kind>" (or =), not negated and without with.
func kindGuard(expr *ast.Expr) (string, bool) {
	if expr.Negated || len(expr.With) > 0 || !expr.IsCall() || len(expr.Operands()) != 2 {
		return "", false
	}
	if op := expr.Operator(); !op.Equal(ast.Equal.Ref()) && !op.Equal(ast.Equality.Ref()) {
		return "", false
	}
	a, b := expr.Operand(0), expr.Operand(1)
	if ref, ok := b.Value.(ast.Ref); ok && ref.Equal(tokenKindRef) {
		a, b = b, a
	}
	if ref, ok := a.Value.(ast.Ref); !ok || !ref.Equal(tokenKindRef) {
		return "", false
	}
	kind, ok := b.Value.(ast.String)
	return string(kind), ok
}

// analyseKinds narrows the paths to key on by the token's kind. A rule
// body that requires input.token.kind to be another kind than the
// request's fails at that expression: what comes after it, and the rule's
// value, are never evaluated, so what only they read cannot change the
// answer. For each kind some body requires, and for every other kind, it
// walks what the decision query reaches (rules through the references to
// them, every definition and else of each, and each body up to a guard
// that excludes the kind) and collects what that reads. (An XBS anonymous
// token never reaches the guest package, which reads the parsed body: the
// chat commands of anonymous visitors, whose bodies differ, share their
// decisions.)
//
// It gives up (nil) where it cannot be sure: no guard at all, a with
// modifier anywhere reached (it can change input.token.kind for what it
// evaluates), or input used as a whole.
func analyseKinds(c *ast.Compiler, query ast.Ref) (byKind map[string][][]*ast.Term, other [][]*ast.Term) {
	kinds := map[string]bool{}
	for _, mod := range c.Modules {
		for _, rule := range mod.Rules {
			for r := rule; r != nil; r = r.Else {
				for _, expr := range r.Body {
					if kind, ok := kindGuard(expr); ok {
						kinds[kind] = true
					}
				}
			}
		}
	}
	if len(kinds) == 0 {
		return nil, nil
	}
	// reached is what the query reaches when input.token.kind is kind, or
	// any kind no guard names when known is false.
	reached := func(kind string, known bool) ([][]*ast.Term, bool) {
		seen := map[*ast.Rule]bool{}
		var queue []*ast.Rule
		rc := newReadCollector(func(ref ast.Ref) {
			for _, rule := range c.GetRulesDynamicWithOpts(ref, ast.RulesOptions{IncludeHiddenModules: true}) {
				if !seen[rule] {
					seen[rule] = true
					queue = append(queue, rule)
				}
			}
		})
		rc.vis.Walk(query)
		for len(queue) > 0 {
			rule := queue[len(queue)-1]
			queue = queue[:len(queue)-1]
			for r := rule; r != nil; r = r.Else {
				rc.vis.Walk(r.Head.Args)
				rc.vis.Walk(r.Head.Reference)
				excluded := false
				for _, expr := range r.Body {
					if required, ok := kindGuard(expr); ok && (!known || required != kind) {
						excluded = true
						break
					}
					rc.vis.Walk(expr)
				}
				if !excluded {
					if r.Head.Key != nil {
						rc.vis.Walk(r.Head.Key)
					}
					if r.Head.Value != nil {
						rc.vis.Walk(r.Head.Value)
					}
				}
			}
		}
		if rc.whole != "" || rc.with {
			return nil, false
		}
		return rc.minimal(), true
	}
	byKind = make(map[string][][]*ast.Term, len(kinds))
	for kind := range kinds {
		paths, ok := reached(kind, true)
		if !ok {
			return nil, nil
		}
		byKind[kind] = paths
	}
	other, ok := reached("", false)
	if !ok {
		return nil, nil
	}
	return byKind, other
}
