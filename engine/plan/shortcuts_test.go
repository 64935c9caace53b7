package plan

import (
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestShortcutsMatchOPA holds the statements evaluated without OPA's own
// machinery (object.union made natively, scans of objects and sets without
// closures, the result set read directly) to topdown, on inputs that take
// each of their ways: disjoint, overlapping, nested, equal and empty
// objects, operands that are not objects, scans left early and nested,
// arrays and objects of values not all constant (opMake*From).
func TestShortcutsMatchOPA(t *testing.T) {
	mod := ast.MustParseModuleWithOpts(`package p
union := object.union(input.a, input.b)
keys contains k if {
	some k, v in input.a
	some k2, v2 in input.b
	k == k2
	v != v2
}
members := {x | some x in {y | some y in input.list}; x != 2}
first_big := k if {
	some k, v in input.a
	v == 2
}
all_small if {
	every _, v in input.a { v != 3 }
}
nested contains [k, x] if {
	some k, v in input.a
	some x in {z | some z in input.list}
	x == v
}
arr := [input.a, "k", [input.list, 1]]
obj := {"p": input.a, "q": 1, "r": {"s": input.b}}
d := {"union": object.union(input.a, input.b), "keys": sort(keys), "members": sort(members), "nested": sort(nested)}
`, ast.ParserOptions{RegoVersion: ast.RegoV1})
	inputs := []string{
		`{}`,
		`{"a": {}, "b": {}}`,
		`{"a": {"x": 1}, "b": {}}`,
		`{"a": {}, "b": {"x": 1}}`,
		`{"a": {"x": 1}, "b": {"x": 1}}`,
		`{"a": {"x": 1, "y": 2}, "b": {"z": 3}}`,
		`{"a": {"x": 1, "y": 2}, "b": {"y": 3, "z": 4}}`,
		`{"a": {"x": {"p": 1, "q": 2}}, "b": {"x": {"q": 3, "r": 4}, "w": 5}}`,
		`{"a": {"x": {"p": 1}}, "b": {"x": 2}}`,
		`{"a": "s", "b": {"x": 1}}`,
		`{"a": {"x": 1}, "b": [1]}`,
		`{"a": {"x": 1}}`,
		`{"a": {"1": 1, "x": 2, "y": 3}, "b": {"x": 2}, "list": [1, 2, 3, 2, "x"]}`,
		`{"a": {"x": 3}, "list": []}`,
		`{"a": {"x": null, "y": 1}, "list": [null, 1, 2]}`,
	}
	// (Sets sorted into arrays: topdown's answer is read back through JSON.)
	for _, q := range []string{"union", "first_big", "all_small", "arr", "obj", "d"} {
		b := prepare(t, map[string]*ast.Module{"p.rego": mod}, map[string]any{}, "data.p."+q)
		for _, in := range inputs {
			if !b.check(t, q+" "+in, ast.MustParseTerm(in).Value) {
				t.Errorf("%s %s: the plan failed where topdown answered", q, in)
			}
		}
	}
}

// TestShippedResultIsReadDirectly: the shipped decision query's result
// object is not made on each evaluation (results.go).
func TestShippedResultIsReadDirectly(t *testing.T) {
	b := policy(t, "../../policies", "data.guestgate.authz.decision")
	n := 0
	walkBlocks(b.plan.blocks, func(bl *block) {
		for _, st := range bl.stmts {
			switch st.op {
			case opResultValue:
				n++
			case opResultSetAdd, opMakeObject:
				t.Errorf("the query still holds opcode %d", st.op)
			}
		}
	})
	if n != 1 {
		t.Fatalf("%d direct results, want 1", n)
	}
}

// TestNestedLiteralsFold: a literal whose values are literals is folded
// whole, innermost first, and evaluations that change a copy of part of it
// leave it as it was.
func TestNestedLiteralsFold(t *testing.T) {
	mod := ast.MustParseModuleWithOpts(`package p
routes := {"a": {"m": {"GET", "PUT"}, "n": {"x": [1, {"y": [true]}]}}, "b": {"m": set()}}
grown contains x if {
	some x in routes[input.r].m
}
grown contains input.extra
d := {"n": routes.a.n, "m": sort(routes.a.m), "grown": sort(grown), "inner": object.union(routes.a.n, {"z": input.extra})}
`, ast.ParserOptions{RegoVersion: ast.RegoV1})
	b := prepare(t, map[string]*ast.Module{"p.rego": mod}, map[string]any{}, "data.p.d")
	found := false
	for _, fn := range b.plan.funcs {
		if fn.name != "g0.data.p.routes" {
			continue
		}
		found = true
		for _, bl := range fn.blocks {
			for _, st := range bl.stmts {
				if isMake(st.op) {
					t.Errorf("routes still makes a literal (opcode %d)", st.op)
				}
			}
		}
	}
	if !found {
		t.Fatal("no function g0.data.p.routes in the plan")
	}
	for _, in := range []string{`{}`, `{"r": "a", "extra": "POST"}`, `{"r": "b", "extra": 1}`, `{"r": "a"}`, `{}`} {
		if !b.check(t, in, ast.MustParseTerm(in).Value) {
			t.Errorf("%s: the plan failed where topdown answered", in)
		}
	}
}
