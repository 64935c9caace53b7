package ext_authz

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/guestgate/guestgate/bench/workload"
	"github.com/guestgate/guestgate/internal/memo"
	"github.com/guestgate/guestgate/tokens"
)

// TestPrunedTokenClaimsGiveTheSameDecisions holds the pruning of
// input.token.claims to the claims the shipped policy names (tokenInput)
// to the decisions of the whole claims: over the shipped traffic mix and
// the session workload with their real tokens, and over the same requests
// with tokens of every kind whose claims are drawn at random (the claims
// the policy reads with good, wrong, empty and absent values, and claims
// it never reads).
func TestPrunedTokenClaimsGiveTheSameDecisions(t *testing.T) {
	c, ws := shippedChecker(t, 0, -1)
	cs := c.compiled.Load()
	plan := c.plan(c.engine.Load().Current(), cs.format)
	if plan.claims.all {
		t.Fatal("the shipped policy's plan keeps every claim: nothing is pruned")
	}
	toks, err := ws.Mint(3)
	if err != nil {
		t.Fatal(err)
	}
	cases := append(workload.Cases(toks, 3), workload.Session(toks.Kite, toks.Link, 3)...)
	ctx := context.Background()
	decide := func(r *request, tok *tokens.Token, claims claimSet) ast.Value {
		t.Helper()
		shown := tokenInput(tok, claims)
		if shown == nil {
			t.Fatal("the token cannot be shown")
		}
		in := &inputDoc{r: r, token: tok, tok: shown, id: "req", need: plan}
		res, err := plan.rev.Eval(ctx, in.Value())
		if err != nil {
			t.Fatal(err)
		}
		return res.Value
	}
	compare := func(name string, r *request, tok *tokens.Token) (allowed bool) {
		t.Helper()
		pruned, whole := decide(r, tok, plan.claims), decide(r, tok, claimSet{all: true})
		if pruned == nil || whole == nil || pruned.Compare(whole) != 0 {
			t.Fatalf("%s: pruned claims decide %v, the whole claims %v", name, pruned, whole)
		}
		a, _ := pruned.(ast.Object).Get(ast.StringTerm("allowed")).Value.(ast.Boolean)
		return bool(a)
	}
	var requests []*request
	for _, tc := range cases {
		r := readRequest(tc.Request, &cs.check, false)
		if r.rawToken == "" {
			continue
		}
		requests = append(requests, r)
		tok, err := cs.verifier.Verify(ctx, r.rawToken)
		if err != nil {
			continue // the mix's bad tokens: no claims to prune
		}
		if got := compare(tc.Name, r, tok); got != tc.Allowed {
			t.Fatalf("%s: allowed %v, want %v", tc.Name, got, tc.Allowed)
		}
	}

	rng := rand.New(rand.NewPCG(18, 18))
	pick := func(vs ...any) any { return vs[rng.IntN(len(vs))] }
	absent := struct{}{}
	kinds := []tokens.Kind{tokens.KindXBSAnonymous, tokens.KindRegular, tokens.KindSecureAnonymous, tokens.KindGuest, tokens.KindAccess}
	allowed := 0
	for range 3000 {
		claims := map[string]any{}
		for name, vs := range map[string][]any{
			"custom:entry":      {"kite", "public_link", "other", "", absent, absent, nil, false},
			"custom:wid":        {"W-DEMO", "W-OTHER", "", absent, absent, 7.0, false},
			"custom:channel_id": {"kite-0003", "public-lobby", "support-1", "", absent, []any{"x"}},
			"scope":             {"launchpads/" + "lp-0003", "messages:write", "messages:read messages:write", "", absent, 1.0},
			"role":              {"launchpad_user", "admin", absent},
			"jti":               {"j-1", absent},
			"name":              {"Ada", absent},
			"unread":            {map[string]any{"a": 1.0}, "x", absent},
		} {
			if v := pick(vs...); v != absent {
				claims[name] = v
			}
		}
		payload, err := json.Marshal(claims)
		if err != nil {
			t.Fatal(err)
		}
		tok := &tokens.Token{Kind: kinds[rng.IntN(len(kinds))], Subject: pick("s-1", toks.GuestPersonID).(string),
			Issuer: pick("https://issuer.example", "i").(string), Name: pick("", "Ada").(string), Payload: payload}
		r := requests[rng.IntN(len(requests))]
		if compare("random token "+string(tok.Kind), r, tok) {
			allowed++
		}
	}
	t.Logf("%d of 3000 random tokens allowed; the plan keeps %v", allowed, plan.claims.id)
	if allowed == 0 {
		t.Fatal("no random token was allowed: the comparison saw denials alone")
	}
}

// TestACachedTokenKeepsOnlyTheClaimsThePolicyReads: after a check, the
// token cache's token holds input.token with the claims the shipped policy
// names and none of the others (iss, aud, exp, jti, ...).
func TestACachedTokenKeepsOnlyTheClaimsThePolicyReads(t *testing.T) {
	c, ws := shippedChecker(t, 0, 0)
	toks, err := ws.Mint(1)
	if err != nil {
		t.Fatal(err)
	}
	tc := workload.Session(toks.Kite, toks.Link, 1)[0]
	if err := tc.Check(c.Decide(context.Background(), tc.Request).CheckResponse()); err != nil {
		t.Fatal(err)
	}
	tok, err := c.compiled.Load().verifier.Verify(context.Background(), toks.Kite)
	if err != nil {
		t.Fatal(err)
	}
	forms, _ := memo.Load[[]tokenForm](tok.Memo())
	if len(forms) != 1 {
		t.Fatalf("%d forms kept, want 1", len(forms))
	}
	claims := forms[0].shared.Term().Value.(ast.Object).Get(ast.StringTerm("claims")).Value.(ast.Object)
	var got []string
	for _, k := range claims.Keys() {
		got = append(got, string(k.Value.(ast.String)))
	}
	want := []string{"custom:channel_id", "custom:entry", "custom:wid"}
	if !slices.Equal(got, want) {
		t.Fatalf("cached input.token.claims has %v, want %v (the token has %d claims)", got, want, len(tok.Claims()))
	}
}
