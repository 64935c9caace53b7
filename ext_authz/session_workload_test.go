package ext_authz

import (
	"context"
	"testing"

	"github.com/guestgate/guestgate/bench/workload"
)

func TestShippedPolicyGivesTheSessionWorkloadItsAnswers(t *testing.T) {
	c, ws := shippedChecker(t, 0, 0)
	for _, n := range []int{0, 1, 9999} {
		toks, err := ws.Mint(n)
		if err != nil {
			t.Fatal(err)
		}
		s := workload.Session(toks.Kite, toks.Link, n)
		if len(s) != workload.SessionLength {
			t.Fatalf("a session of %d requests, want %d", len(s), workload.SessionLength)
		}
		denied := 0
		for _, tc := range s {
			if !tc.Allowed {
				denied++
			}
			if err := tc.Check(c.Decide(context.Background(), tc.Request).CheckResponse()); err != nil {
				t.Errorf("visitor %d: %v", n, err)
			}
		}
		if denied != 2 {
			t.Errorf("%d denials in a session, want 2", denied)
		}
	}
}
