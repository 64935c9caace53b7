package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

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

func TestDecisionCacheKeysOnTheInputPathsTheShippedPolicyReads(t *testing.T) {
	e := newCacheEngine(t, Options{Dir: "../policies"})
	p := e.current.Load()
	var got []string
	for _, path := range p.reads.paths {
		got = append(got, ast.Ref(path).String())
	}
	// Not the request id, the headers or the peers: the policy never
	// refers to them, so requests differing there share a decision.
	want := []string{"parsed_body", "parsed_path", "parsed_query", "token", "token_error", "truncated_body",
		"attributes.request.http.method"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) || p.cache == nil {
		t.Fatalf("paths = %v (cache %v), want %v", got, p.cache != nil, want)
	}
	if st := e.Status().DecisionCache; !strings.HasPrefix(st, "on") {
		t.Fatalf("Status().DecisionCache = %q", st)
	}
}

func TestDecisionCacheIsOffWhenTheAnswerCouldDifferForTheSameInput(t *testing.T) {
	for _, tc := range []struct {
		name, body, why string
	}{
		{"clock", `decision := time.now_ns() > input.t`, "time.now_ns"},
		{"randomness", `decision := rand.intn("x", 10) > input.n`, "rand.intn"},
		{"network", `decision := http.send({"method": "GET", "url": input.u}).status_code == 200`, "http.send"},
		{"token verified against the clock", `decision := io.jwt.decode_verify(input.t, {"secret": "s"})[0]`, "io.jwt.decode_verify"},
		{"input passed whole", `decision := count(input) > 1`, "input as a whole"},
		{"input assigned", `decision if { x := input; x.a == 1 }`, "input as a whole"},
		{"input iterated", `decision if { some k, _ in input; k == "a" }`, "input"},
		{"input under a computed key", `decision if { some k; input[k] == 1 }`, "computed key"},
		{"function of input", `f(x) := x.a
decision := f(input)`, "input as a whole"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writePolicy(t, map[string]string{"p.rego": "package guestgate.authz\n\n" + tc.body + "\n"})
			e := newCacheEngine(t, Options{Dir: dir, NonStrict: true})
			p := e.current.Load()
			if p.cache != nil || !strings.Contains(p.reads.off(), tc.why) {
				t.Fatalf("cache on = %v, off reason %q; want off because of %q", p.cache != nil, p.reads.off(), tc.why)
			}
			if st := e.Status().DecisionCache; !strings.HasPrefix(st, "off: ") {
				t.Fatalf("Status().DecisionCache = %q", st)
			}
		})
	}
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
	for round := range 3 { // the third round is answered from the cache
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
		}
	}
	// The inputs must exercise both answers for the comparison to mean anything.
	if allowed == 0 || allowed == len(inputs) {
		t.Fatalf("%d of %d inputs allowed; want some of each", allowed, len(inputs))
	}
}

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

// shippedPolicyInputs are input documents across the shipped policy's
// rules, allowed and denied.
func shippedPolicyInputs() []ast.Value {
	var inputs []ast.Value
	for _, kind := range []string{"xbs_anonymous", "guest", "access", "secure_anonymous", "regular", "other"} {
		for _, path := range []string{
			"/conversations/GetTokenCommand", "/conversations/channels/kite-7f3a/MarkReadCommand",
			"/conversations/channels/support-1/JoinChannelCommand", "/conversations/ListChannelsCommand",
			"/v1/jwt/login", "/v1/messages", "/v1/people/guest-abc", "/v1/launchpads/lp-1/apps", "/calendar",
		} {
			for _, method := range []string{"POST", "GET"} {
				for _, claims := range []string{
					`{"custom:wid": "W-DEMO", "custom:entry": "kite", "custom:channel_id": "kite-7f3a"}`,
					`{"custom:entry": "public_link", "custom:channel_id": "public-lobby"}`,
					`{"custom:wid": "W-OFF"}`,
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

func TestRevisionReadsWhatThePolicyRefersTo(t *testing.T) {
	e := newCacheEngine(t, Options{Dir: "../policies"})
	rev := e.Current()
	for _, tc := range []struct {
		path []string
		want bool
	}{
		{[]string{"attributes"}, true},
		{[]string{"attributes", "request", "http"}, true},
		{[]string{"attributes", "request", "http", "method"}, true},
		{[]string{"attributes", "request", "http", "headers"}, false},
		{[]string{"attributes", "source"}, false},
		{[]string{"token"}, true},
		{[]string{"token", "claims", "custom:wid"}, true},
		{[]string{"request_id"}, false},
		{[]string{"version"}, false},
	} {
		if got := rev.Reads(tc.path...); got != tc.want {
			t.Errorf("Reads(%v) = %v, want %v", tc.path, got, tc.want)
		}
	}
	whole := newCacheEngine(t, Options{Dir: writePolicy(t, map[string]string{"p.rego": "package guestgate.authz\n\ndecision := count(input) > 1\n"})})
	if !whole.Current().Reads("request_id") {
		t.Error("a policy using input as a whole: Reads(request_id) = false")
	}
	// A policy calling a non-deterministic built-in still reads only its
	// paths: its input can be pruned even though its decisions are not
	// cached.
	nd := newCacheEngine(t, Options{Dir: writePolicy(t, map[string]string{"p.rego": "package guestgate.authz\n\ndecision := time.now_ns() > input.t\n"})})
	if nd.Current().Reads("request_id") || !nd.Current().Reads("t") || nd.current.Load().cache != nil {
		t.Error("non-deterministic policy: want reads t only and no cache")
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

// TestDecisionCacheKeysOnWhatTheQueryReads: a configured decision query
// that reads input itself keys the cache on that part too, so one answer
// is never served for another value of it.
func TestDecisionCacheKeysOnWhatTheQueryReads(t *testing.T) {
	dir := writePolicy(t, map[string]string{"p.rego": `package guestgate.authz

decision := {"a": {"allowed": true}, "b": {"allowed": false}}
`})
	e := newCacheEngine(t, Options{Dir: dir, Query: "data.guestgate.authz.decision[input.who]"})
	if !e.Current().Reads("who") {
		t.Fatal("Reads(who) is false, yet the query reads input.who")
	}
	ctx := context.Background()
	for _, tc := range []struct{ in, want string }{
		{`{"who": "a"}`, `{"allowed": true}`},
		{`{"who": "a"}`, `{"allowed": true}`},
		{`{"who": "a"}`, `{"allowed": true}`}, // from the cache
		{`{"who": "b"}`, `{"allowed": false}`},
		{`{"who": "b"}`, `{"allowed": false}`},
		{`{"who": "b"}`, `{"allowed": false}`},
	} {
		res, err := e.Eval(ctx, ast.MustParseTerm(tc.in).Value)
		if err != nil || !res.Defined || res.Value.String() != tc.want {
			t.Fatalf("%s: %v (defined %v), %v; want %s", tc.in, res.Value, res.Defined, err, tc.want)
		}
	}
}

// pathStrings renders paths as input refs' dotted form, sorted.
func pathStrings(paths [][]*ast.Term) []string {
	var out []string
	for _, p := range paths {
		out = append(out, ast.Ref(p).String())
	}
	slices.Sort(out)
	return out
}

// TestDecisionKeysNarrowByTokenKindInTheShippedPolicy: an XBS anonymous
// token never reaches the guest package, the only one that reads the
// parsed body, so anonymous chat commands whose bodies differ share a
// decision; an access token's decision is keyed on its body.
func TestDecisionKeysNarrowByTokenKindInTheShippedPolicy(t *testing.T) {
	p := newCacheEngine(t, Options{Dir: "../policies"}).current.Load()
	for kind, want := range map[string][]string{
		"xbs_anonymous":    {"attributes.request.http.method", "parsed_path", "token", "token_error"},
		"secure_anonymous": {"parsed_path", "token", "token_error"},
		"access":           {"attributes.request.http.method", "parsed_body", "parsed_path", "parsed_query", "token", "token_error", "truncated_body"},
	} {
		if got := pathStrings(p.reads.byKind[kind]); !slices.Equal(got, want) {
			t.Errorf("%s: keyed on %v, want %v", kind, got, want)
		}
	}
}

// TestDecisionKeysNarrowByTokenKind: what a body reads before a guard on
// input.token.kind counts for every kind, what it reads after the guard
// and in the rule's value only for the kind the guard names; a negated
// comparison is no guard; rules are followed through references and
// function calls, and else lines are walked whatever the line before
// required; a with modifier, which can change input.token.kind, turns the
// narrowing off.
func TestDecisionKeysNarrowByTokenKind(t *testing.T) {
	const policy = `package guestgate.authz

default decision := false

decision if {
	input.token.kind == "a"
	a_ok
}

decision if {
	input.before == 1
	input.token.kind == "b"
	input.b_body == "yes"
}

decision if {
	not input.token.kind == "c"
	input.negated
}

decision if f(1)

decision if g == 1

a_ok if input.a_field == 1

f(x) := y if {
	"d" = input.token.kind
	y := input.d_only[x]
}

g := input.e_value if {
	input.token.kind == "e"
} else := input.e_else
`
	p := newCacheEngine(t, Options{Dir: writePolicy(t, map[string]string{"p.rego": policy})}).current.Load()
	common := []string{"before", "e_else", "negated", "token.kind"}
	for kind, extra := range map[string][]string{
		"a": {"a_field"},
		"b": {"b_body"},
		"d": {"d_only"},
		"e": {"e_value"},
	} {
		want := append(slices.Clone(common), extra...)
		slices.Sort(want)
		if got := pathStrings(p.reads.byKind[kind]); !slices.Equal(got, want) {
			t.Errorf("kind %s: keyed on %v, want %v", kind, got, want)
		}
	}
	if got := pathStrings(p.reads.otherKinds); !slices.Equal(got, common) {
		t.Errorf("another kind: keyed on %v, want %v", got, common)
	}
	if _, ok := p.reads.byKind["c"]; ok {
		t.Error("a negated comparison was taken for a guard")
	}

	withPolicy := policy + `
decision if a_ok with input.token.kind as "a"
`
	if p := newCacheEngine(t, Options{Dir: writePolicy(t, map[string]string{"p.rego": withPolicy})}).current.Load(); p.reads.byKind != nil || p.cache == nil {
		t.Errorf("with a with modifier: narrowed %v (cache on: %v), want not narrowed and the cache on", p.reads.byKind, p.cache != nil)
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
