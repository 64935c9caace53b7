package plan

import "github.com/open-policy-agent/opa/v1/ast"

// The result set. The planner ends a query by binding its one expression
// to a key and adding the object {key: value} to the result set:
//
//	MakeObjectStmt t; ObjectInsertStmt t "x" v; ResultSetAddStmt t
//
// Eval only needs the value, so directResults turns each such triple into
// one opResultValue statement that adds the key and the value as they are,
// and the object is made only for rego's result set (regoEval), which
// needs it.

// result is one result of the result set: the object {key: value}, or, for
// a result added as a whole object, that object (key nil).
type result struct{ key, value *ast.Term }

// term is the result as the plan's result set holds it, an object.
func (r result) term() *ast.Term {
	if r.key == nil {
		return r.value
	}
	return ast.ObjectTerm([2]*ast.Term{r.key, r.value})
}

// addResult adds {key: value} (or value itself, key nil) to the result
// set, unless it holds that result already: the result set is a set.
func (s *state) addResult(key, value *ast.Term) {
	for _, r := range s.results {
		if sameResult(r, key, value) {
			return
		}
	}
	s.results = append(s.results, result{key: key, value: value})
}

func sameResult(r result, key, value *ast.Term) bool {
	switch {
	case r.key != nil && key != nil:
		return r.key.Value.Compare(key.Value) == 0 && r.value.Value.Compare(value.Value) == 0
	case r.key == nil && key == nil:
		return r.value.Value.Compare(value.Value) == 0
	}
	return r.term().Value.Compare(result{key, value}.term().Value) == 0
}

// directResults rewrites the query's result objects (the triple above),
// all of them or none: only where every ResultSetAddStmt is of that
// shape, with a constant key, and the object's local is read nowhere else.
func directResults(blocks []*block) {
	type site struct {
		b *block
		i int
	}
	var (
		sites []site
		adds  int
	)
	walkBlocks(blocks, func(b *block) {
		for i := range b.stmts {
			if b.stmts[i].op != opResultSetAdd {
				continue
			}
			adds++
			if i < 2 {
				continue
			}
			mk, ins, add := b.stmts[i-2], b.stmts[i-1], b.stmts[i]
			t := add.a.local
			if mk.op == opMakeObject && mk.target == t &&
				(ins.op == opObjectInsert || ins.op == opObjectInsertOnce) && ins.target == t &&
				ins.a.term != nil && ins.b.term == nil && ins.b.local != t {
				sites = append(sites, site{b, i})
			}
		}
	})
	if len(sites) == 0 || len(sites) != adds {
		return
	}
	for _, st := range sites {
		if uses(blocks, st.b.stmts[st.i].a.local) != 3 {
			return
		}
	}
	// Last first: a block's sites were found in order, so replacing one
	// leaves the index of each before it as it was.
	for k := len(sites) - 1; k >= 0; k-- {
		b, i := sites[k].b, sites[k].i
		ins := b.stmts[i-1]
		b.stmts = append(b.stmts[:i-2], append([]stmt{{op: opResultValue, a: ins.a, b: ins.b}}, b.stmts[i+1:]...)...)
	}
}

// uses counts the statements of blocks that name local l in any of their
// fields (an unused field names local 0: l 0 is over-counted, which only
// keeps directResults from rewriting).
func uses(blocks []*block, l int) int {
	n := 0
	walkBlocks(blocks, func(b *block) {
		for _, st := range b.stmts {
			if mentions(st, l) {
				n++
			}
		}
	})
	return n
}

func mentions(st stmt, l int) bool {
	local := func(o operand) bool { return o.term == nil && o.local == l }
	if local(st.a) || local(st.b) || st.target == l || st.value == l {
		return true
	}
	for _, o := range st.args {
		if local(o) {
			return true
		}
	}
	for _, o := range st.path {
		if local(o) {
			return true
		}
	}
	return false
}
