package engine

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// objectInput is an Input over a built document that counts how often the
// whole of it is asked for.
type objectInput struct {
	obj    ast.Object
	values int
}

func (in *objectInput) Get(k *ast.Term) *ast.Term { return in.obj.Get(k) }
func (in *objectInput) Value() ast.Value          { in.values++; return in.obj }

// TestEvalInputKeysAndDecidesAsEval: a document handed over part by part
// keys the decision cache byte for byte as the built document does, gets
// the answer evaluation gives, and is built only when the policy is
// evaluated.
func TestEvalInputKeysAndDecidesAsEval(t *testing.T) {
	cached := newCacheEngine(t, Options{Dir: "../policies"})
	uncached := newCacheEngine(t, Options{Dir: "../policies", DecisionCacheSize: -1})
	p := cached.current.Load()
	ctx := context.Background()
	for i, v := range shippedPolicyInputs() {
		obj, ok := v.(ast.Object)
		if !ok {
			continue
		}
		want, err := uncached.Eval(ctx, obj)
		if err != nil {
			t.Fatal(err)
		}
		whole, parts := newKeyEncoder(), newKeyEncoder()
		okWhole := whole.decisionKey(&p.reads, obj, nil)
		okParts := parts.inputKey(&p.reads, &objectInput{obj: obj}, nil)
		if okWhole != okParts || string(whole.buf) != string(parts.buf) {
			t.Fatalf("input %d %v: keyed by parts %v %q, whole %v %q", i, obj, okParts, parts.buf, okWhole, whole.buf)
		}
		for round := range 3 { // kept on the second sighting at the latest
			_, hit := p.cache.get(parts.buf) // an earlier input may share the key
			if round == 2 && !hit {
				t.Fatalf("input %d: not kept after two sightings", i)
			}
			in := &objectInput{obj: obj}
			got, err := cached.Current().EvalInput(ctx, in)
			if err != nil || got.Defined != want.Defined || want.Defined && want.Value.Compare(got.Value) != 0 {
				t.Fatalf("round %d input %d %v: %v %v, want %v", round, i, obj, got, err, want)
			}
			if built := in.values > 0; built == hit {
				t.Fatalf("round %d input %d: document built %d times, answered from the cache: %v", round, i, in.values, hit)
			}
		}
	}
}

func TestDecisionKeysOfDifferentValuesDiffer(t *testing.T) {
	values := []string{`null`, `true`, `false`, `0`, `1`, `1.0`, `""`, `"1"`, `"a"`, `"ab"`, `["a", "b"]`, `["ab"]`, `[["a"], "b"]`,
		`{"a": "b"}`, `{"ab": ""}`, `{"a": {"b": null}}`, `{"a"}`, `{"a", "b"}`, `[]`, `{}`, `set()`, `[null]`, `[{}]`}
	seen := map[string]string{}
	for _, s := range values {
		e := newKeyEncoder()
		e.ok = true
		e.value(ast.MustParseTerm(s).Value)
		b := e.buf
		if !e.ok {
			t.Fatalf("%s does not encode", s)
		}
		if other, dup := seen[string(b)]; dup {
			t.Fatalf("%s and %s encode alike", s, other)
		}
		seen[string(b)] = s
	}
}

func TestSharedInputPartsKeyAsTheirValue(t *testing.T) {
	e := newCacheEngine(t, Options{Dir: "../policies"})
	p := e.current.Load()
	tok := NewShared(ast.MustParseTerm(`{"kind": "xbs_anonymous", "issuer": "iss", "subject": "s", "claims": {"custom:wid": "W-DEMO"}}`).Value)
	other := NewShared(ast.MustParseTerm(`{"kind": "guest"}`).Value)
	input := ast.NewObject(
		ast.Item(ast.StringTerm("parsed_path"), ast.MustParseTerm(`["conversations", "GetTokenCommand"]`)),
		ast.Item(ast.StringTerm("token"), tok.Term()),
	)
	// The same value in a term of its own: encoded the long way.
	copied := ast.NewObject(
		ast.Item(ast.StringTerm("parsed_path"), ast.MustParseTerm(`["conversations", "GetTokenCommand"]`)),
		ast.Item(ast.StringTerm("token"), ast.NewTerm(tok.Term().Value)),
	)
	key := func(in ast.Value, shared ...*Shared) string {
		enc := newKeyEncoder()
		if !enc.decisionKey(&p.reads, in, shared) {
			t.Fatal("not keyed")
		}
		return string(enc.buf)
	}
	plain := key(copied)
	for name, got := range map[string]string{
		"shared":                key(input, tok),
		"shared part not given": key(input),
		"another shared part":   key(input, other),
		"nil shared part":       key(input, nil),
	} {
		if got != plain {
			t.Errorf("%s: key differs from the value's own encoding", name)
		}
	}
	if key(ast.NewObject(ast.Item(ast.StringTerm("token"), other.Term())), other) == plain {
		t.Error("another token keys alike")
	}
}

// TestSharedPartKeepsOnlyItsEncoding: a shared part lives as long as its
// token is cached, so it keeps its encoding, not an encoder's buffer.
func TestSharedPartKeepsOnlyItsEncoding(t *testing.T) {
	v := ast.MustParseTerm(`{"kind": "guest", "issuer": "iss", "subject": "s"}`).Value
	kept := make([]*Shared, 1000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range kept {
		kept[i] = NewShared(v)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(kept)
	if per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / int64(len(kept)); per > 1024 {
		t.Fatalf("each shared part keeps %d bytes for an encoding of %d", per, len(kept[0].enc))
	}
}

// TestDecisionKeyTellsWhereAPathStopped: a path the policy reads through a
// value that is not an object keys that value with how deep the path got,
// so {"channel": "c1"} never takes the decision of {"channel": {"id": "c1"}}
// (both end in the string "c1").
func TestDecisionKeyTellsWhereAPathStopped(t *testing.T) {
	dir := writePolicy(t, map[string]string{"p.rego": `package guestgate.authz

default allowed := false

allowed if input.body.channel.id == "c1"

decision := {"allowed": allowed}
`})
	e := newCacheEngine(t, Options{Dir: dir})
	ctx := context.Background()
	eval := func(s string) string {
		t.Helper()
		res, err := e.Eval(ctx, ast.MustParseTerm(s).Value)
		if err != nil {
			t.Fatal(err)
		}
		return res.Value.String()
	}
	for range 3 { // kept on the second sighting, answered from the cache on the third
		if got := eval(`{"body": {"channel": {"id": "c1"}}}`); got != `{"allowed": true}` {
			t.Fatalf("the channel's id: %s", got)
		}
	}
	for _, in := range []string{
		`{"body": {"channel": "c1"}}`,
		`{"body": "c1"}`,
		`{"body": {"channel": ["c1"]}}`,
		`{"body": {"channel": {"id": ["c1"]}}}`,
	} {
		for range 3 {
			if got := eval(in); got != `{"allowed": false}` {
				t.Fatalf("%s: %s, want not allowed", in, got)
			}
		}
	}
}

// TestNarrowedDecisionKeysGiveEveryAnswerEvaluationGives: the policy above
// decided with and without the cache over inputs that differ in every
// path, for every kind, agrees on every answer, and decisions of a kind
// that cannot read a path are shared across its values.
func TestNarrowedDecisionKeysGiveEveryAnswerEvaluationGives(t *testing.T) {
	const policy = `package guestgate.authz

default decision := {"allowed": false}

decision := {"allowed": true, "body": input.body} if {
	input.token.kind == "reader"
	input.body.ok == true
} else := {"allowed": true} if {
	input.token.kind == "plain"
	input.path == "/ok"
} else := {"allowed": input.path == "/open"}
`
	dir := writePolicy(t, map[string]string{"p.rego": policy})
	cached := newCacheEngine(t, Options{Dir: dir})
	uncached := newCacheEngine(t, Options{Dir: dir, DecisionCacheSize: -1})
	if got := pathStrings(cached.current.Load().reads.byKind["plain"]); !slices.Equal(got, []string{"path", "token.kind"}) {
		t.Fatalf("plain: keyed on %v", got)
	}
	ctx := context.Background()
	var inputs []ast.Value
	for _, kind := range []string{`"reader"`, `"plain"`, `"other"`, `1`, `null`} {
		for _, path := range []string{`"/ok"`, `"/open"`, `"/no"`} {
			for _, body := range []string{`{"ok": true}`, `{"ok": false}`, `{"ok": true, "n": 2}`, `null`} {
				inputs = append(inputs, ast.MustParseTerm(fmt.Sprintf(`{"token": {"kind": %s}, "path": %s, "body": %s}`, kind, path, body)).Value)
			}
		}
	}
	inputs = append(inputs, ast.MustParseTerm(`{"token": "reader", "path": "/open"}`).Value, ast.MustParseTerm(`{"path": "/ok"}`).Value)
	for round := range 3 { // the third round is answered from the cache
		for i, in := range inputs {
			want, err1 := uncached.Eval(ctx, in)
			got, err2 := cached.Eval(ctx, in)
			if err1 != nil || err2 != nil || want.Defined != got.Defined || want.Value.Compare(got.Value) != 0 {
				t.Fatalf("round %d input %d %v:\n cached   %v %v\n uncached %v %v", round, i, in, got, err2, want, err1)
			}
		}
	}
	key := func(s string) string {
		enc := newKeyEncoder()
		if !enc.decisionKey(&cached.current.Load().reads, ast.MustParseTerm(s).Value, nil) {
			t.Fatalf("%s not keyed", s)
		}
		return string(enc.buf)
	}
	if key(`{"token": {"kind": "plain"}, "path": "/ok", "body": 1}`) != key(`{"token": {"kind": "plain"}, "path": "/ok", "body": 2}`) {
		t.Error("a plain token's decisions differ by a body it cannot read")
	}
	if key(`{"token": {"kind": "reader"}, "path": "/ok", "body": 1}`) == key(`{"token": {"kind": "reader"}, "path": "/ok", "body": 2}`) {
		t.Error("a reader token's decisions are shared across bodies")
	}
	if key(`{"token": {"kind": "x"}, "path": "/ok"}`) == key(`{"token": {"kind": "y"}, "path": "/ok"}`) {
		t.Error("two kinds no guard names share a key")
	}
}
