package plan

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// both is one policy prepared twice: topdown (OPA's answer) and this
// package's plan, over the same compiler, store and data.
type both struct {
	opa  rego.PreparedEvalQuery
	plan *Plan
	// constants are the policy's string constants, for the mutations.
	constants []string
}

// policy compiles the .rego and data files under dir as engine does (Rego
// v1, strict) and prepares query both ways.
func policy(t testing.TB, dir, query string) both {
	t.Helper()
	res, err := loader.NewFileLoader().WithRegoVersion(ast.RegoV1).All([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	return prepare(t, res.ParsedModules(), res.Documents, query)
}

func prepare(t testing.TB, modules map[string]*ast.Module, docs map[string]any, query string) both {
	t.Helper()
	ctx := context.Background()
	store := inmem.NewFromObjectWithOpts(docs, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1).WithStrict(true)
	if c.Compile(modules); c.Failed() {
		t.Fatal(c.Errors)
	}
	ref := ast.MustParseRef(query)
	pq, err := rego.New(
		rego.ParsedQuery(ast.NewBody(ast.NewExpr(ast.NewTerm(ref)))),
		rego.Compiler(c), rego.Store(store), rego.Transaction(txn),
	).PrepareForEval(ctx)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := store.Read(ctx, txn, storage.RootPath)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Prepare(ctx, c, ref, store, txn, doc.(ast.Value))
	if err != nil {
		t.Fatalf("Prepare(%s): %v", query, err)
	}
	var constants []string
	for _, m := range modules {
		ast.WalkTerms(m, func(t *ast.Term) bool {
			if s, ok := t.Value.(ast.String); ok && len(s) < 64 {
				constants = append(constants, string(s))
			}
			return false
		})
	}
	sort.Strings(constants)
	return both{opa: pq, plan: p, constants: constants}
}

// answer is an evaluation's outcome, comparable across evaluators.
type answer struct {
	value   ast.Value
	defined bool
	err     error
}

func (b both) topdown(t testing.TB, input ast.Value) answer {
	t.Helper()
	rs, err := b.opa.Eval(context.Background(), rego.EvalParsedInput(input))
	if err != nil {
		return answer{err: err}
	}
	if len(rs) == 0 {
		return answer{}
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		t.Fatalf("topdown: %d results", len(rs))
	}
	v, err := ast.InterfaceToValue(rs[0].Expressions[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	return answer{value: v, defined: true}
}

// check fails t unless the plan's answer for input is topdown's. A plan
// that errors is not a mismatch: its caller asks topdown then. It reports
// whether the plan answered.
func (b both) check(t testing.TB, name string, input ast.Value) bool {
	t.Helper()
	want := b.topdown(t, input)
	v, defined, err := b.plan.Eval(context.Background(), input)
	if err != nil {
		return false
	}
	switch {
	case want.err != nil:
		t.Fatalf("%s: plan answered %v (defined %v), topdown failed: %v\ninput: %v", name, v, defined, want.err, input)
	case defined != want.defined:
		t.Fatalf("%s: plan defined = %v (%v), topdown %v (%v)\ninput: %v", name, defined, v, want.defined, want.value, input)
	case defined && v.Compare(want.value) != 0:
		t.Fatalf("%s: plan = %v\ntopdown = %v\ninput: %v", name, v, want.value, input)
	}
	return true
}

// TestShippedRegoTestsPass evaluates every test rule of the shipped
// policies (policies/*_test.rego, the cases `opa test` runs, each with its
// own input through `with`) with the plan, and holds each to topdown.
func TestShippedRegoTestsPass(t *testing.T) {
	res, err := loader.NewFileLoader().WithRegoVersion(ast.RegoV1).All([]string{"../../policies"})
	if err != nil {
		t.Fatal(err)
	}
	var tests []string
	for _, m := range res.ParsedModules() {
		for _, r := range m.Rules {
			if name := r.Head.Name.String(); strings.HasPrefix(name, "test_") {
				tests = append(tests, m.Package.Path.String()+"."+name)
			}
		}
	}
	sort.Strings(tests)
	if len(tests) < 50 {
		t.Fatalf("found %d test rules in policies/, want the shipped suite", len(tests))
	}
	for _, q := range tests {
		b := prepare(t, res.ParsedModules(), res.Documents, q)
		if !b.check(t, q, ast.NewObject()) {
			t.Errorf("%s: the plan failed where topdown answered", q)
		}
		if v, defined, _ := b.plan.Eval(context.Background(), ast.NewObject()); !defined || v.Compare(ast.Boolean(true)) != 0 {
			t.Errorf("%s = %v (defined %v), want true", q, v, defined)
		}
	}
}

// seeds are the shipped policy's inputs of testdata/shipped, one per kind
// of traffic of the load test's mix.
func seeds(t testing.TB) map[string]any {
	t.Helper()
	files, err := filepath.Glob("testdata/shipped/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no seed inputs: %v", err)
	}
	out := map[string]any{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = v
	}
	return out
}

// TestShippedPolicyMatchesOPA holds the plan to topdown on the seed inputs
// and on each of them with every input path the mutations reach replaced
// by every value of the mutations' pool, one at a time.
func TestShippedPolicyMatchesOPA(t *testing.T) {
	b := policy(t, "../../policies", "data.guestgate.authz.decision")
	m := newMutator(b.constants, seeds(t))
	answered, total := 0, 0
	for _, name := range m.names {
		input, err := ast.InterfaceToValue(m.seeds[name])
		if err != nil {
			t.Fatal(err)
		}
		if !b.check(t, name, input) {
			t.Fatalf("%s: the plan failed on a seed input", name)
		}
		// Every path, and a spread of the pool's values (about 30).
		stride := max(1, len(m.values)/30)
		for p := range m.paths {
			for v := 0; v < len(m.values); v += stride {
				doc := m.apply(name, [][2]int{{p, v}})
				input, err := ast.InterfaceToValue(doc)
				if err != nil {
					t.Fatal(err)
				}
				total++
				if b.check(t, name, input) {
					answered++
				}
			}
		}
	}
	// Errors are answered by topdown in the engine; on these inputs the
	// plan should rarely need it.
	t.Logf("the plan answered %d of %d mutated inputs", answered, total)
	if answered < total*9/10 {
		t.Fatalf("the plan answered %d of %d inputs", answered, total)
	}
}

// FuzzPlanMatchesOPA holds the plan to topdown on the shipped policy for
// inputs made of a seed and a list of mutations (path, value) the fuzzer
// chooses.
func FuzzPlanMatchesOPA(f *testing.F) {
	b := policy(f, "../../policies", "data.guestgate.authz.decision")
	m := newMutator(b.constants, seeds(f))
	for i := range m.names {
		f.Add(uint8(i), []byte{})
		f.Add(uint8(i), []byte{1, 2, 3, 4})
		f.Add(uint8(i), []byte{7, 0, 9, 13, 20, 5})
	}
	f.Fuzz(func(t *testing.T, seed uint8, ops []byte) {
		var muts [][2]int
		for i := 0; i+1 < len(ops) && len(muts) < 8; i += 2 {
			muts = append(muts, [2]int{int(ops[i]), int(ops[i+1])})
		}
		name := m.names[int(seed)%len(m.names)]
		input, err := ast.InterfaceToValue(m.apply(name, muts))
		if err != nil {
			t.Fatal(err)
		}
		b.check(t, name, input)
	})
}

// TestPlanRefusesImpureBuiltins: a policy calling a built-in outside the
// pure set is refused, naming it, so that the engine serves it with topdown.
func TestPlanRefusesImpureBuiltins(t *testing.T) {
	mod := ast.MustParseModuleWithOpts(`package p
allow if time.now_ns() > 0`, ast.ParserOptions{RegoVersion: ast.RegoV1})
	c := ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1)
	if c.Compile(map[string]*ast.Module{"p.rego": mod}); c.Failed() {
		t.Fatal(c.Errors)
	}
	store := inmem.NewWithOpts(inmem.OptReturnASTValuesOnRead(true))
	ctx := context.Background()
	txn := storage.NewTransactionOrDie(ctx, store)
	_, err := Prepare(ctx, c, ast.MustParseRef("data.p.allow"), store, txn, ast.NewObject())
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "time.now_ns") {
		t.Fatalf("Prepare = %v, want ErrUnsupported naming time.now_ns", err)
	}
}

// TestConflictIsAnError: two values for one complete rule are an error of
// the evaluation, as in topdown, never one of the values.
func TestConflictIsAnError(t *testing.T) {
	mod := ast.MustParseModuleWithOpts(`package p
v := 1 if input.a
v := 2 if input.b`, ast.ParserOptions{RegoVersion: ast.RegoV1})
	b := prepare(t, map[string]*ast.Module{"p.rego": mod}, map[string]any{}, "data.p.v")
	input := ast.MustParseTerm(`{"a": true, "b": true}`).Value
	if _, _, err := b.plan.Eval(context.Background(), input); !errors.Is(err, ErrConflict) {
		t.Fatalf("plan Eval = %v, want ErrConflict", err)
	}
	if got := b.topdown(t, input); got.err == nil {
		t.Fatalf("topdown answered %v, want a conflict error", got.value)
	}
	b.check(t, "one value", ast.MustParseTerm(`{"a": true}`).Value)
}

// TestRegoTargetAnswersAsTopdown: a PreparedEvalQuery of Target, prepared
// through Prepare's capture, answers rego's Eval as topdown does.
func TestRegoTargetAnswersAsTopdown(t *testing.T) {
	mod := ast.MustParseModuleWithOpts(`package p
v := {"n": input.n, "big": input.n > 1}`, ast.ParserOptions{RegoVersion: ast.RegoV1})
	c := ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1)
	if c.Compile(map[string]*ast.Module{"p.rego": mod}); c.Failed() {
		t.Fatal(c.Errors)
	}
	ctx := context.WithValue(context.Background(), captureKey{}, &capture{data: ast.NewObject()})
	pq, err := rego.New(rego.Query("data.p.v"), rego.Compiler(c), rego.Target(Target)).PrepareForEval(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := pq.Eval(ctx, rego.EvalInput(map[string]any{"n": 2}))
	if err != nil || len(rs) != 1 || len(rs[0].Expressions) != 1 {
		t.Fatalf("Eval = %v, %v", rs, err)
	}
	got, _ := json.Marshal(rs[0].Expressions[0].Value)
	if string(got) != `{"big":true,"n":2}` {
		t.Fatalf("data.p.v = %s", got)
	}
}
