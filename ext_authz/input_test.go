package ext_authz

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/engine"
	"github.com/guestgate/guestgate/tokens"
)

// TestInputHoldsEverythingThePolicyCanRead builds the input for policies
// that read different parts of it: what a policy refers to is always
// there, what it cannot refer to is left out.
func TestInputHoldsEverythingThePolicyCanRead(t *testing.T) {
	cfg, err := config.Parse(nil, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cr := checkRequest("POST", "/a/b?q=1", map[string]string{"x-a": "1", "authorization": "Bearer tok", "content-type": "application/json"}, `{"k":"v"}`)
	r := readRequest(cr, &cfg.Check, false)
	if r.problem != "" {
		t.Fatal(r.problem)
	}
	for _, tc := range []struct {
		name, policy string
		present      []string
		absent       []string
	}{
		{
			"one header", `decision := input.attributes.request.http.headers["x-a"] == "1"`,
			[]string{"attributes.request.http.headers", "attributes.request.http.headers.x-a"},
			[]string{"request_id", "parsed_body", "parsed_path", "attributes.source", "attributes.request.http.method", "version"},
		},
		{
			"the body and the path", `decision if { input.parsed_body.k == "v"; input.parsed_path[0] == "a" }`,
			[]string{"parsed_body.k", "parsed_path"},
			[]string{"attributes", "request_id", "parsed_query", "token", "token_error"},
		},
		{
			"attributes as a whole", `decision := count(input.attributes) > 0`,
			[]string{"attributes.source", "attributes.request.http.headers", "attributes.request.http.method", "attributes.request.http.body"},
			[]string{"request_id", "parsed_body"},
		},
		{
			"input as a whole", `decision := count(input) > 0`,
			[]string{"attributes.source", "attributes.request.http.headers", "request_id", "parsed_body", "parsed_query", "version", "token_error", "truncated_body"},
			nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package guestgate.authz\n\n"+tc.policy+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			eng, err := engine.New(engine.Options{Dir: dir, NonStrict: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			input := buildInput(r, nil, "missing", "req-1", false, newInputPlan(eng.Current(), inputFormat{}))
			for _, p := range tc.present {
				if find(input, p) == nil {
					t.Errorf("input.%s missing from %v", p, input)
				}
			}
			for _, p := range tc.absent {
				if find(input, p) != nil {
					t.Errorf("input.%s built though the policy cannot read it", p)
				}
			}
		})
	}
}

// find looks up a dotted path of object keys.
func find(v ast.Value, dotted string) ast.Value {
	for _, k := range strings.Split(dotted, ".") {
		obj, ok := v.(ast.Object)
		if !ok {
			return nil
		}
		t := obj.Get(ast.StringTerm(k))
		if t == nil {
			return nil
		}
		v = t.Value
	}
	return v
}

func TestSharedHeaderOptionsReuseOnlyMatchingLeadingHeaders(t *testing.T) {
	shared := headerOptions([]Header{{"a", "1"}, {"b", "2"}})
	for _, tc := range []struct {
		name   string
		hs     []Header
		reused int
	}{
		{"same", []Header{{"a", "1"}, {"b", "2"}}, 2},
		{"one appended", []Header{{"a", "1"}, {"b", "2"}, {"x-guestgate-request-id", "r"}}, 2},
		{"second differs", []Header{{"a", "1"}, {"b", "3"}}, 1},
		{"first differs", []Header{{"a", "9"}, {"b", "2"}}, 0},
		{"fewer", []Header{{"a", "1"}}, 1},
		{"none", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := sharedHeaderOptions(shared, tc.hs)
			if len(got) != len(tc.hs) {
				t.Fatalf("%d options for %d headers", len(got), len(tc.hs))
			}
			for i, h := range tc.hs {
				if got[i].GetHeader().GetKey() != h.Name || got[i].GetHeader().GetValue() != h.Value ||
					got[i].GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
					t.Fatalf("option %d = %v, want %v", i, got[i], h)
				}
				if reused := i < len(shared) && got[i] == shared[i]; reused != (i < tc.reused) {
					t.Fatalf("option %d reused = %v, want %v", i, reused, i < tc.reused)
				}
			}
		})
	}
}

func TestAttributesOfAMethodOnlyPolicyAreTheFreshlyBuiltOnes(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package guestgate.authz\n\ndecision := input.attributes.request.http.method == \"POST\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(engine.Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	plan := newInputPlan(eng.Current(), inputFormat{})
	if plan.methodOnly == nil {
		t.Fatal("no memo for a policy reading only the method")
	}
	cfg, err := config.Parse(nil, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{"POST", "GET", "DELETE", "BREW", ""} {
		r := readRequest(checkRequest(method, "/x", map[string]string{"authorization": "Bearer t", "x-a": "1"}, ""), &cfg.Check, false)
		got := find(buildInput(r, nil, "missing", "id", false, plan), "attributes")
		want := r.attributesValue(false, plan)
		if got == nil || got.Compare(want) != 0 {
			t.Fatalf("%q: input.attributes = %v, want %v", method, got, want)
		}
	}
	// The shipped policy reads the method alone too.
	c, _ := shippedChecker(t, 0, 0)
	if newInputPlan(c.engine.Load().Current(), inputFormat{}).methodOnly == nil {
		t.Fatal("no memo for the shipped policy")
	}
}

// A verified token whose claims cannot be shown to the policy (a payload
// that does not decode) is not shown as verified with its claims left out:
// a policy that denies on a claim would then allow. tokenInput refuses it,
// and the check treats the token as bad_claims.
func TestTokenWhoseClaimsCannotBeShownIsNotVerified(t *testing.T) {
	tok := &tokens.Token{Kind: "guest", Subject: "s", Issuer: "i", Payload: []byte(`{"restricted":`)}
	// Whether or not the policy reads the claim.
	for _, cs := range []claimSet{{all: true}, {keys: map[string]*ast.Term{}, id: "\x00"}} {
		if s := tokenInput(tok, cs); s != nil {
			t.Fatalf("tokenInput = %v, want nil: the claims were dropped, the token still verified", s.Term())
		}
	}
}

// buildInput assembles a check's whole input document at once.
func buildInput(r *request, tok *engine.Shared, tokErr, id string, showCredential bool, need *inputPlan) ast.Value {
	d := &inputDoc{r: r, tok: tok, tokErr: tokErr, id: id, showCredential: showCredential, need: need}
	return d.Value()
}
