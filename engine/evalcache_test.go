package engine

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
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

// TestEvalCachesChangeNoAnswer evaluates the shipped policy with the
// engine's caches and with OPA's own, over requests of every kind of token
// crossed with paths, methods and claims that allow and deny for every
// reason, and with data a `with` statement overrides (a frame pushed on
// the rule cache): the decisions must be the same, headers included.
func TestEvalCachesChangeNoAnswer(t *testing.T) {
	e, err := New(Options{Dir: "../policies", DecisionCacheSize: -1, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	p := e.current.Load()
	plain := func(in ast.Value) ast.Value {
		rs, err := p.query.Eval(context.Background(), rego.EvalParsedInput(in), rego.EvalTransaction(p.txn))
		if err != nil || len(rs) != 1 {
			t.Fatalf("plain eval: %v, %v", rs, err)
		}
		return rs[0].Expressions[0].Value.(ast.Value)
	}

	tokens := []string{
		`{"kind": "xbs_anonymous", "claims": {"custom:wid": "W-DEMO", "custom:entry": "kite", "custom:channel_id": "kite-1"}}`,
		`{"kind": "xbs_anonymous", "claims": {"custom:wid": "W-OFF", "custom:entry": "kite", "custom:channel_id": "kite-1"}}`,
		`{"kind": "xbs_anonymous", "claims": {"custom:entry": "public_link", "custom:channel_id": "public-lobby"}}`,
		`{"kind": "xbs_anonymous", "claims": {"custom:entry": "public_link", "custom:channel_id": "support-1"}}`,
		`{"kind": "xbs_anonymous", "claims": {"custom:wid": "W-DEMO"}}`,
		`{"kind": "xbs_anonymous", "claims": {"custom:wid": "W-NONE"}}`,
		`{"kind": "guest", "claims": {}}`,
		`{"kind": "access", "claims": {"scope": "messaging people"}}`,
		`{"kind": "secure_anonymous", "claims": {"role": "launchpad_user", "scope": "launchpads/lp-1"}}`,
		`{"kind": "regular", "claims": {"scope": "x"}}`,
		`{"kind": "unknown", "claims": {}}`,
		`{"kind": "access", "subject": "", "claims": {"scope": "messaging"}}`,
	}
	paths := []string{
		`["conversations", "channels", "kite-1", "MarkReadCommand"]`,
		`["conversations", "channels", "kite-1", "CreateKiteChannelCommand"]`,
		`["conversations", "channels", "public-lobby", "JoinChannelCommand"]`,
		`["conversations", "channels", "support-1", "JoinChannelCommand"]`,
		`["conversations", "channels", "support-1", "MarkReadCommand"]`,
		`["conversations", "channels", "nope", "MarkReadCommand"]`,
		`["conversations", "channels", "kite-1", "GetTokenCommand"]`,
		`["conversations", "GetTokenCommand"]`,
		`["conversations", "ListChannelsCommand"]`,
		`["conversations", "channels", "..", "MarkReadCommand"]`,
		`["v1", "jwt", "login"]`,
		`["v1", "messages"]`,
		`["v1", "people", "guest-other"]`,
		`["v1", "launchpads", "lp-1", "apps"]`,
		`["v1", "launchpads", "lp-2"]`,
		`["calendar", "events"]`,
	}
	bodies := []string{`null`, `{"toPersonId": "regular-1"}`, `{"toPersonId": "guest-other"}`}
	allowed, denied := 0, 0
	for _, tok := range tokens {
		token := ast.MustParseTerm(tok).Value.(ast.Object)
		if token.Get(ast.StringTerm("subject")) == nil {
			token.Insert(ast.StringTerm("subject"), ast.StringTerm("guest-me"))
		}
		token.Insert(ast.StringTerm("issuer"), ast.StringTerm("https://issuer.example"))
		token.Insert(ast.StringTerm("name"), ast.StringTerm("Visitor"))
		for _, path := range paths {
			for _, method := range []string{"POST", "GET"} {
				for _, body := range bodies {
					in := ast.MustParseTerm(`{"attributes": {"request": {"http": {"method": "` + method + `"}}}, "parsed_path": ` + path +
						`, "parsed_query": {}, "parsed_body": ` + body + `, "truncated_body": false, "token_error": null}`).Value.(ast.Object)
					in.Insert(ast.StringTerm("token"), ast.NewTerm(token))
					got, err := e.Eval(context.Background(), in)
					if err != nil || !got.Defined {
						t.Fatalf("Eval(%v) = %v, %v", in, got, err)
					}
					if want := plain(in); got.Value.Compare(want) != 0 {
						t.Fatalf("input %v:\n with the engine's caches %v\n with OPA's own          %v", in, got.Value, want)
					}
					if got.Value.(ast.Object).Get(ast.StringTerm("allowed")).Equal(ast.BooleanTerm(true)) {
						allowed++
					} else {
						denied++
					}
				}
			}
		}
	}
	if allowed == 0 || denied == 0 {
		t.Fatalf("%d allowed, %d denied: the requests must hold both", allowed, denied)
	}
}

// TestEvalCachesKeepWithFrames runs a policy whose `with` pushes a frame on
// the rule cache: the rule evaluated before, under and after the override
// must each see their own data, not a result cached in another frame.
func TestEvalCachesKeepWithFrames(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"authz.rego": `package guestgate.authz

state := "on" if data.registry.widgets.W.on == true else := "off"

decision := [before, under, after] if {
	before := state
	under := state with data.registry.widgets.W.on as false
	after := state
}
`,
		"registry/widgets.json": `{"widgets": {"W": {"on": true}}}`,
	})
	e := newTestEngine(t, dir, nil)
	res, err := e.Eval(context.Background(), ast.NewObject())
	if err != nil || !res.Defined {
		t.Fatalf("Eval = %v, %v", res, err)
	}
	if want := ast.MustParseTerm(`["on", "off", "on"]`).Value; res.Value.Compare(want) != 0 {
		t.Fatalf("decision = %v, want %v", res.Value, want)
	}
}
