package engine

import (
	"slices"
	"strings"
	"testing"
)

func TestTokenClaimsAreTheClaimsThePolicyNames(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string // nil: all claims
		why        string
	}{
		{"constant names", `decision if { input.token.claims.scope == "a"; input.token.claims["custom:wid"] }`, []string{"custom:wid", "scope"}, ""},
		{"under a claim", `decision if input.token.claims.metadata.x[input.k] == 1`, []string{"metadata"}, ""},
		{"no claims", `decision if { input.token.kind == "guest"; input.token.subject != "" }`, []string{}, ""},
		{"type tests read none", `decision if { is_object(input.token); is_object(input.token.claims); type_name(input) == "object" }`, []string{}, ""},
		{"object.get with a constant key", `decision if object.get(input.token.claims, "scope", null) == "a"`, []string{"scope"}, ""},
		{"object.get with a constant path", `decision if object.get(input.token, ["claims", "wid"], null) == "a"`, []string{"wid"}, ""},
		{"object.get from input", `decision if object.get(input, ["token", "claims", "wid"], null) == "a"`, []string{"wid"}, ""},
		{"object.get elsewhere", `decision if object.get(input.attributes, input.k, null) == "a"`, []string{}, ""},
		{"object.get with a computed key", `decision if { some p in [["claims", "a"]]; object.get(input.token, p, null) == 1 }`, nil, "input.token as a whole"},
		{"object.get with an empty path", `decision if object.get(input.token, [], null) == 1`, nil, "input.token as a whole"},
		{"a computed claim name", `decision if { some k in ["a"]; input.token.claims[k] == 1 }`, nil, "computed key"},
		{"a function of a claim name", `f(k) if input.token.claims[k]
decision if f("a")`, nil, "computed key"},
		{"claims whole", `decision if count(input.token.claims) > 1`, nil, "input.token.claims as a whole"},
		{"through a variable", `decision if { t := input.token; t.claims.a == 1 }`, []string{"a"}, ""},
		{"token whole through a variable", `decision if { t := input.token; count(t) > 1 }`, nil, "input.token as a whole"},
		{"token passed to a function", `f(t) := t.claims.a
decision if f(input.token) == 1`, nil, "input.token as a whole"},
		{"token iterated", `decision if { some k, _ in input.token; k == "a" }`, nil, "input.token"},
		{"input whole", `decision if count(input) > 1`, nil, "input as a whole"},
		{"a with modifier", `p if input.token.claims.a == 1
decision if p with input.token.claims.a as 1`, nil, "with"},
		{"a type test of a claim reads it", `decision if is_string(input.token.claims.a)`, []string{"a"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writePolicy(t, map[string]string{"p.rego": "package guestgate.authz\n\n" + tc.body + "\n"})
			e := newCacheEngine(t, Options{Dir: dir, NonStrict: true})
			names, all := e.Current().TokenClaims()
			why := e.current.Load().reads.claims.all
			if tc.want == nil {
				if !all || !strings.Contains(why, tc.why) {
					t.Fatalf("TokenClaims = %v, %v (%q); want all because of %q", names, all, why, tc.why)
				}
				return
			}
			if all || !slices.Equal(names, tc.want) {
				t.Fatalf("TokenClaims = %v, %v (%q); want %v", names, all, why, tc.want)
			}
		})
	}
}

func TestTheShippedPolicyReadsTheClaimsItNames(t *testing.T) {
	e := newCacheEngine(t, Options{Dir: "../policies"})
	names, all := e.Current().TokenClaims()
	want := []string{"custom:channel_id", "custom:entry", "custom:wid", "role", "scope"}
	if all || !slices.Equal(names, want) {
		t.Fatalf("TokenClaims = %v, %v (%q); want %v", names, all, e.current.Load().reads.claims.all, want)
	}
}
