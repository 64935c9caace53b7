package engine

import (
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestRuleCacheKeepsTopdownSemantics walks the pooled rule cache through
// what topdown does with its default cache: values and undefined results
// per reference, frames pushed by `with` that see only their own entries,
// and a reference slice reused by the caller after Put.
func TestRuleCacheKeepsTopdownSemantics(t *testing.T) {
	c := getRuleCache()
	defer c.release()
	a, b := ast.MustParseRef("data.p.a"), ast.MustParseRef("data.p.b")
	one, two := ast.IntNumberTerm(1), ast.IntNumberTerm(2)

	steps := []struct {
		name          string
		do            func()
		ref           ast.Ref
		want          *ast.Term
		wantUndefined bool
	}{
		{"empty cache misses", func() {}, a, nil, false},
		{"put value", func() { c.Put(a, one) }, a, one, false},
		{"prefix of a cached ref misses", func() {}, ast.MustParseRef("data.p"), nil, false},
		{"put undefined", func() { c.Put(b, nil) }, b, nil, true},
		{"new frame hides the old", func() { c.Push() }, a, nil, false},
		{"put in the new frame", func() { c.Put(a, two) }, a, two, false},
		{"pop restores the old frame", func() { c.Pop() }, a, one, false},
		{"undefined survives the pop", func() {}, b, nil, true},
		{"a value put after undefined stays undefined", func() { c.Put(b, two) }, b, nil, true},
		{"caller reuses its slice", func() {
			ref := ast.MustParseRef("data.p.c")
			c.Put(ref, one)
			ref[2] = ast.StringTerm("d")
		}, ast.MustParseRef("data.p.c"), one, false},
	}
	for _, s := range steps {
		s.do()
		got, undefined := c.Get(s.ref)
		if undefined != s.wantUndefined || (got == nil) != (s.want == nil) || (got != nil && !got.Equal(s.want)) {
			t.Fatalf("%s: Get(%v) = %v, %v; want %v, %v", s.name, s.ref, got, undefined, s.want, s.wantUndefined)
		}
	}
	// As topdown's own cache, Keys lists the references holding a value
	// (data.p.b holds one, even if Get reports it undefined).
	if keys := c.Keys(); len(keys) != 3 {
		t.Fatalf("Keys() = %v, want data.p.a, data.p.b and data.p.c", keys)
	}
}

// TestReleasedRuleCacheIsEmpty makes sure a cache back from the pool holds
// nothing of the evaluation before.
func TestReleasedRuleCacheIsEmpty(t *testing.T) {
	c := getRuleCache()
	c.Push()
	c.Put(ast.MustParseRef("data.p.a"), ast.IntNumberTerm(1))
	c.release()
	if len(c.entries) != 0 || len(c.keys) != 0 || len(c.index) != 0 || len(c.frames) != 1 {
		t.Fatalf("released cache: %d entries, %d keys, %d index, %d frames", len(c.entries), len(c.keys), len(c.index), len(c.frames))
	}
}

// TestDataCacheAnswersLoadedDataOnly checks the shared data cache: it finds
// documents under data, and leaves anything else (data as a whole, a path
// the data lacks) to topdown's read of the store.
func TestDataCacheAnswersLoadedDataOnly(t *testing.T) {
	c := dataCache{root: ast.MustParseTerm(`{"registry": {"widgets": {"W": {"on": true}}, "list": ["x"]}}`).Value}
	for _, tc := range []struct {
		ref  string
		want string // "" for nil
	}{
		{"data.registry.widgets.W.on", "true"},
		{"data.registry.widgets.W", `{"on": true}`},
		{"data.registry.list[0]", `"x"`},
		{"data.registry.widgets.missing", ""},
		{"data.registry.list[5]", ""},
		{"data", ""},
		{"input.registry", ""},
	} {
		got := c.Get(ast.MustParseRef(tc.ref))
		if (got == nil) != (tc.want == "") || (got != nil && got.Compare(ast.MustParseTerm(tc.want).Value) != 0) {
			t.Errorf("Get(%s) = %v, want %q", tc.ref, got, tc.want)
		}
	}
}
