package engine

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

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

func TestSnapshotReadsWhatThePolicyRefersTo(t *testing.T) {
	e := newCacheEngine(t, Options{Dir: "../policies"})
	snap := e.Current()
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
		if got := snap.Reads(tc.path...); got != tc.want {
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
