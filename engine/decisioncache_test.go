package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/guestgate/guestgate/internal/memo"
	"github.com/open-policy-agent/opa/v1/ast"
)

func writePolicy(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestDecisionCacheCanBeTurnedOff(t *testing.T) {
	e := newCacheEngine(t, Options{Dir: "../policies", DecisionCacheSize: -1})
	if p := e.current.Load(); p.cache != nil {
		t.Fatal("cache on with DecisionCacheSize -1")
	}
}

func TestDecisionCacheSharesDecisionsOnlyAcrossWhatThePolicyCannotRead(t *testing.T) {
	dir := writePolicy(t, map[string]string{"p.rego": `package guestgate.authz

decision := {"allowed": input.user.role == "admin", "who": input.user.name} if input.path == "/x"
`})
	e := newCacheEngine(t, Options{Dir: dir})
	p := e.current.Load()
	in := func(s string) ast.Value { return ast.MustParseTerm(s).Value }
	ctx := context.Background()
	eval := func(s string) string {
		t.Helper()
		res, err := e.Eval(ctx, in(s))
		if err != nil {
			t.Fatal(err)
		}
		if !res.Defined {
			return "undefined"
		}
		return res.Value.String()
	}
	entries := func() int { return len(p.cache.cur) + len(p.cache.prev) }

	first := eval(`{"path": "/x", "user": {"role": "admin", "name": "a"}, "request_id": "1"}`)
	if entries() != 0 {
		t.Fatalf("%d entries after one decision: a decision is kept on its second sighting", entries())
	}
	eval(`{"path": "/x", "user": {"role": "admin", "name": "a"}, "request_id": "1"}`)
	if entries() != 1 {
		t.Fatalf("%d entries after the same decision twice", entries())
	}
	// Only the request id differs: the same entry answers.
	if got := eval(`{"path": "/x", "user": {"role": "admin", "name": "a"}, "request_id": "2"}`); got != first || entries() != 1 {
		t.Fatalf("unread field: %s (%d entries), want %s from the cache", got, entries(), first)
	}
	// Anything the policy reads is part of the key.
	for _, tc := range []struct{ input, want string }{
		{`{"path": "/x", "user": {"role": "user", "name": "a"}}`, `{"allowed": false, "who": "a"}`},
		{`{"path": "/x", "user": {"role": "admin", "name": "b"}}`, `{"allowed": true, "who": "b"}`},
		{`{"path": "/y", "user": {"role": "admin", "name": "a"}}`, `undefined`},
		{`{"user": {"role": "admin", "name": "a"}}`, `undefined`},
		{`{"path": "/x", "user": {"role": "admin"}}`, `undefined`},
		{`{"path": "/x", "user": {"role": "admin", "name": 1}}`, `{"allowed": true, "who": 1}`},
		{`{"path": "/x", "user": {"role": "admin", "name": 1.0}}`, `{"allowed": true, "who": 1.0}`},
		{`{"path": "/x", "user": {"role": "admin", "name": "1"}}`, `{"allowed": true, "who": "1"}`},
		{`{"path": "/x", "user": {"role": "admin", "name": ["a"]}}`, `{"allowed": true, "who": ["a"]}`},
		{`{"path": "/x", "user": {"role": "admin", "name": {"a"}}}`, `{"allowed": true, "who": {"a"}}`},
		{`{"path": "/x", "user": {"role": "admin", "name": null}}`, `{"allowed": true, "who": null}`},
		{`{"path": "/x", "user": "admin"}`, `undefined`},
	} {
		for range 3 { // the third answer may come from the cache
			if got := eval(tc.input); got != tc.want {
				t.Fatalf("Eval(%s) = %s, want %s", tc.input, got, tc.want)
			}
		}
	}
}

func TestDecisionCacheStartsEmptyWithEachRevision(t *testing.T) {
	dir := writePolicy(t, map[string]string{
		"p.rego":       "package guestgate.authz\n\ndecision := data.flags.on if input.x == 1\n",
		"flags/f.json": `{"on": true}`,
	})
	e := newCacheEngine(t, Options{Dir: dir})
	input := ast.MustParseTerm(`{"x": 1}`).Value
	for _, want := range []string{"true", "false", "true"} {
		if err := os.WriteFile(filepath.Join(dir, "flags/f.json"), []byte(`{"on": `+want+`}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := e.Reload(); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			res, err := e.Eval(context.Background(), input)
			if err != nil || res.Value.String() != want {
				t.Fatalf("after the data says %s: Eval = %v, %v", want, res.Value, err)
			}
		}
	}
}

func TestDecisionCacheGivesEveryAnswerEvaluationGives(t *testing.T) {
	cached := newCacheEngine(t, Options{Dir: "../policies"})
	uncached := newCacheEngine(t, Options{Dir: "../policies", DecisionCacheSize: -1})
	if cached.current.Load().cache == nil || uncached.current.Load().cache != nil {
		t.Fatal("want one engine with the cache and one without")
	}
	ctx := context.Background()
	inputs := shippedPolicyInputs()
	allowed := 0
	effects := map[string]int{} // decisions with an ownership effect, by need
	for round := range 3 {      // the third round is answered from the cache
		for i, in := range inputs {
			want, err1 := uncached.Eval(ctx, in)
			got, err2 := cached.Eval(ctx, in)
			if (err1 == nil) != (err2 == nil) || want.Defined != got.Defined || want.Revision != got.Revision ||
				want.Defined && want.Value.Compare(got.Value) != 0 {
				t.Fatalf("round %d input %d %v:\n cached   %v %v\n uncached %v %v", round, i, in, got, err2, want, err1)
			}
			if round == 0 && want.Defined && want.Value.(ast.Object).Get(ast.StringTerm("allowed")).Equal(ast.BooleanTerm(true)) {
				allowed++
			}
			if round == 0 && want.Defined {
				if o := want.Value.(ast.Object).Get(ast.StringTerm("ownership")); o != nil {
					effects[o.Get(ast.StringTerm("need")).String()]++
				}
			}
		}
	}
	// The inputs must exercise both answers for the comparison to mean anything.
	if allowed == 0 || allowed == len(inputs) {
		t.Fatalf("%d of %d inputs allowed; want some of each", allowed, len(inputs))
	}
	// And decisions with each ownership effect (ext_authz applies the
	// effect to a cached answer as to any other).
	if effects[`"claim"`] == 0 || effects[`"require"`] == 0 {
		t.Fatalf("ownership effects among the decisions: %v; want claims and requirements", effects)
	}
}

// shippedPolicyInputs are input documents across the shipped policy's
// rules, allowed and denied.
func shippedPolicyInputs() []ast.Value {
	var inputs []ast.Value
	for _, kind := range []string{"xbs_anonymous", "guest", "access", "secure_anonymous", "regular", "other"} {
		for _, path := range []string{
			"/conversations/GetTokenCommand", "/conversations/channels/kite-7f3a/MarkReadCommand",
			"/conversations/channels/support-1/JoinChannelCommand", "/conversations/ListChannelsCommand",
			"/v1/jwt/login", "/v1/messages", "/v1/people/guest-abc", "/v1/launchpads/lp-1/apps", "/calendar",
			// A visitor's own Kite channel: decisions with ownership effects.
			"/conversations/channels/kite-new/CreateKiteChannelCommand", "/conversations/channels/support-1/CreateKiteChannelCommand",
		} {
			for _, method := range []string{"POST", "GET"} {
				for _, claims := range []string{
					`{"custom:wid": "W-DEMO", "custom:entry": "kite", "custom:channel_id": "kite-7f3a"}`,
					`{"custom:entry": "public_link", "custom:channel_id": "public-lobby"}`,
					`{"custom:wid": "W-OFF"}`,
					`{"custom:wid": "W-DEMO"}`,
					`{"scope": "messaging calling people", "role": "launchpad_user"}`,
					`{"scope": "launchpads/lp-1", "role": "launchpad_user"}`,
				} {
					for _, tail := range []string{
						`"token_error": null, "parsed_body": null`,
						`"token_error": null, "parsed_body": {"toPersonId": "guest-xyz"}`,
						`"token_error": null, "parsed_body": {"toPersonId": "person-1"}, "truncated_body": true`,
					} {
						segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
						inputs = append(inputs, ast.MustParseTerm(fmt.Sprintf(
							`{"attributes": {"request": {"http": {"method": %q, "path": %q}}}, "parsed_path": %s, "parsed_query": {},
							  "truncated_body": false, "request_id": "r", "token": {"kind": %q, "issuer": "iss", "subject": "guest-abc",
							  "name": "n", "claims": %s}, %s}`,
							method, path, ast.MustInterfaceToValue(segs), kind, claims, tail)).Value)
					}
				}
			}
		}
	}
	inputs = append(inputs,
		ast.MustParseTerm(`{"token": null, "token_error": "missing", "parsed_path": ["v1"]}`).Value,
		ast.MustParseTerm(`{"token": null, "token_error": "expired", "parsed_path": ["v1"]}`).Value,
		ast.MustParseTerm(`{}`).Value,
		nil,
	)
	return inputs
}

func TestDecisionCacheKeepsOnlyDecisionsSeenTwice(t *testing.T) {
	e := newCacheEngine(t, Options{Dir: "../policies"})
	p := e.current.Load()
	ctx := context.Background()
	for i := range 100 { // a hundred requests that never repeat
		if _, err := e.Eval(ctx, ast.MustParseTerm(fmt.Sprintf(`{"parsed_body": {"messageId": "m-%d"}}`, i)).Value); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(p.cache.cur) + len(p.cache.prev); n != 0 {
		t.Fatalf("%d one-off decisions kept", n)
	}
	repeated := ast.MustParseTerm(`{"parsed_body": {"messageId": "m-1"}}`).Value
	res, err := e.Eval(ctx, repeated)
	if err != nil || !res.Cached() {
		t.Fatalf("the second sighting: cached = %v, %v", res.Cached(), err)
	}
}

func TestDecisionCacheStaysBounded(t *testing.T) {
	c := newDecisionCache(10)
	for i := range 100 {
		c.put([]byte(fmt.Sprint(i)), Result{Defined: true}, 10)
	}
	if n := len(c.cur) + len(c.prev); n > 10 {
		t.Fatalf("%d entries, bound 10", n)
	}
	if _, ok := c.get([]byte("99")); !ok {
		t.Fatal("the newest entry is gone")
	}
	if _, ok := c.get([]byte("0")); ok {
		t.Fatal("the oldest entry is still there")
	}
	// Bounded in bytes too: large decisions push the old ones out sooner.
	c = newDecisionCache(1000)
	for i := range 1000 {
		c.put([]byte(fmt.Sprint(i)), Result{Defined: true}, 100<<10)
	}
	if n := len(c.cur) + len(c.prev); n*(100<<10) > maxCacheBytes+200<<10 {
		t.Fatalf("%d entries of 100 KiB, bound %d bytes", n, maxCacheBytes)
	}
	// A decision too large to keep is not kept.
	c.put([]byte("huge"), Result{Defined: true}, maxCacheBytes)
	if _, ok := c.get([]byte("huge")); ok {
		t.Fatal("a decision of the cache's whole size was kept")
	}
}

func newCacheEngine(t testing.TB, opts Options) *Engine {
	t.Helper()
	opts.Logger = quietLogger()
	e, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func TestDecisionCacheKeepsEntriesInUseAcrossRotations(t *testing.T) {
	c := newDecisionCache(10) // five entries per generation
	c.put([]byte("hot"), Result{Defined: true}, 10)
	for i := range 50 {
		c.put([]byte(fmt.Sprint(i)), Result{Defined: true}, 10)
		if _, ok := c.get([]byte("hot")); !ok {
			t.Fatalf("the entry in use was dropped after %d others", i+1)
		}
	}
}

// FuzzDecisionCache holds the decision cache to evaluation's answers for
// any input document the shipped policy is given: each input is decided
// three times with the cache (kept on the second sighting, answered from
// the cache on the third) and compared with an engine without one.
// Inputs decided earlier in the same process stay cached, so one input can
// take another's decision whenever their keys agree.
func FuzzDecisionCache(f *testing.F) {
	cached := newCacheEngine(f, Options{Dir: "../policies"})
	uncached := newCacheEngine(f, Options{Dir: "../policies", DecisionCacheSize: -1})
	for _, in := range shippedPolicyInputs() {
		if in != nil {
			f.Add(in.String())
		}
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, doc string) {
		term, err := ast.ParseTerm(doc)
		if err != nil || !ast.IsConstant(term.Value) {
			return
		}
		if _, ok := term.Value.(ast.Object); !ok {
			return
		}
		for range 3 {
			want, err1 := uncached.Eval(ctx, term.Value)
			got, err2 := cached.Eval(ctx, term.Value)
			if (err1 == nil) != (err2 == nil) || want.Defined != got.Defined || want.Defined && want.Value.Compare(got.Value) != 0 {
				t.Fatalf("%s:\n cached   %v %v\n uncached %v %v", doc, got, err2, want, err1)
			}
		}
	})
}

// TestCachedDecisionKeepsWhatACallerDerivesFromIt: a decision not yet
// cached keeps no memo; once cached, what a caller stores with it comes
// back with every later answer of the same decision and with no other
// decision's, and a new revision starts without it.
func TestCachedDecisionKeepsWhatACallerDerivesFromIt(t *testing.T) {
	dir := writePolicy(t, map[string]string{"p.rego": "package guestgate.authz\n\ndecision := input.x\n"})
	e := newCacheEngine(t, Options{Dir: dir})
	ctx := context.Background()
	eval := func(s string) Result {
		t.Helper()
		res, err := e.Eval(ctx, ast.MustParseTerm(s).Value)
		if err != nil || !res.Defined {
			t.Fatalf("Eval(%s) = %v, %v", s, res, err)
		}
		return res
	}
	first := eval(`{"x": 1}`)
	if first.Cached() || first.Memo() != nil {
		t.Fatalf("a decision seen once: cached %v, memo %v", first.Cached(), first.Memo())
	}
	memo.Store(first.Memo(), "derived before it was cached")
	second := eval(`{"x": 1}`)
	if !second.Cached() {
		t.Fatal("a decision seen twice is not cached")
	}
	if got, ok := memo.Load[string](second.Memo()); ok {
		t.Fatalf("a store with an uncached decision was kept: %q", got)
	}
	memo.Store(second.Memo(), "derived from 1")
	for range 2 {
		if got, ok := memo.Load[string](eval(`{"x": 1}`).Memo()); !ok || got != "derived from 1" {
			t.Fatalf("the cached decision's memo = %q, %v", got, ok)
		}
	}
	eval(`{"x": 2}`)
	if other := eval(`{"x": 2}`); !other.Cached() {
		t.Fatal("the other decision is not cached")
	} else if got, ok := memo.Load[string](other.Memo()); ok {
		t.Fatalf("another decision has the memo %q", got)
	}

	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package guestgate.authz\n\n# another revision\ndecision := input.x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := second.Revision
	if err := e.Reload(); err != nil || e.Revision() == before {
		t.Fatalf("Reload = %v, revision %s (was %s)", err, e.Revision(), before)
	}
	eval(`{"x": 1}`)
	if res := eval(`{"x": 1}`); !res.Cached() {
		t.Fatal("the new revision's decision is not cached")
	} else if got, ok := memo.Load[string](res.Memo()); ok {
		t.Fatalf("the new revision's decision has the old one's memo %q", got)
	}
}
