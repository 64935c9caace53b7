package engine

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestEvaluatorServingARevision: the plan evaluator serves by default, opa
// turns it off, and a policy calling a built-in the plan evaluator does not
// handle is served by topdown, whole, with the reason in Status. Each gives
// the same answers.
func TestEvaluatorServingARevision(t *testing.T) {
	pure := "package guestgate.authz\n\ndecision := {\"allowed\": input.n > 1}\n"
	clock := "package guestgate.authz\n\ndecision := {\"allowed\": input.n > 1, \"t\": time.now_ns() > 0}\n"
	for _, tc := range []struct {
		name, policy, evaluator, want string
	}{
		{"default", pure, "", "plan"},
		{"plan", pure, EvaluatorPlan, "plan"},
		{"off", pure, EvaluatorOPA, "opa"},
		{"impure built-in", clock, "", "opa (plan: not handled by the plan evaluator: built-in time.now_ns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(tc.policy), 0o600); err != nil {
				t.Fatal(err)
			}
			e, err := New(Options{Dir: dir, Evaluator: tc.evaluator, DecisionCacheSize: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if got := e.Status().Evaluator; !strings.HasPrefix(got, tc.want) {
				t.Fatalf("Status().Evaluator = %q, want %q...", got, tc.want)
			}
			for n, want := range map[int]bool{1: false, 2: true} {
				res, err := e.Eval(context.Background(), ast.MustParseTerm(`{"n": `+string(rune('0'+n))+`}`).Value)
				if err != nil || !res.Defined {
					t.Fatalf("Eval = %v, %v", res, err)
				}
				if got := res.Value.(ast.Object).Get(ast.StringTerm("allowed")); !got.Equal(ast.BooleanTerm(want)) {
					t.Fatalf("n=%d: allowed = %v, want %v", n, got, want)
				}
			}
		})
	}
	if _, err := New(Options{Dir: t.TempDir(), Evaluator: "wasm"}); err == nil || !strings.Contains(err.Error(), "evaluator") {
		t.Fatalf("New with evaluator wasm = %v, want an error naming the evaluator", err)
	}
}

// TestPlanFallbackAnswersWithTopdown: an evaluation the plan evaluator
// cannot finish (two values for one rule) is counted and answered by
// topdown, whose error it is.
func TestPlanFallbackAnswersWithTopdown(t *testing.T) {
	dir := t.TempDir()
	policy := "package guestgate.authz\n\ndecision := 1 if input.a\n\ndecision := 2 if input.b\n"
	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	fallbacks := 0
	e, err := New(Options{Dir: dir, DecisionCacheSize: -1, OnPlanFallback: func(error) { fallbacks++ },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Eval(context.Background(), ast.MustParseTerm(`{"a": true, "b": true}`).Value); err == nil || !strings.Contains(err.Error(), "conflict") {
		t.Fatalf("Eval = %v, want topdown's conflict error", err)
	}
	if fallbacks != 1 {
		t.Fatalf("%d fallbacks counted, want 1", fallbacks)
	}
	if res, err := e.Eval(context.Background(), ast.MustParseTerm(`{"a": true}`).Value); err != nil || res.Value.Compare(ast.Number("1")) != 0 || fallbacks != 1 {
		t.Fatalf("Eval = %v, %v (%d fallbacks), want 1 from the plan", res, err, fallbacks)
	}
}
