package testsupport

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/tokens"
)

// TestDevelopmentTokensOfEveryKindVerify: what Mint hands the tests is
// what the development setup's own verifier accepts, each token as its
// kind, for the visitor it was minted for.
func TestDevelopmentTokensOfEveryKindVerify(t *testing.T) {
	dev, err := LoadDevelopment(filepath.Join(RepoRoot(t), config.DevelopmentFile))
	if err != nil {
		t.Fatal(err)
	}
	v, err := dev.Verifier(context.Background(), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	toks, err := dev.Mint(7)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, raw string
		kind      tokens.Kind
		claim     string
		want      string
	}{
		{"kite", toks.Kite, tokens.KindXBSAnonymous, "custom:channel_id", KiteChannel(7)},
		{"link", toks.Link, tokens.KindXBSAnonymous, "custom:channel_id", "public-lobby"},
		{"guest", toks.Guest, tokens.KindGuest, "sub", "guest-user-7"},
		{"access", toks.Access, tokens.KindAccess, "sub", toks.GuestPersonID},
		{"sat", toks.SAT, tokens.KindSecureAnonymous, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := v.Verify(context.Background(), tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			if tok.Kind != tc.kind {
				t.Errorf("kind %s, want %s", tok.Kind, tc.kind)
			}
			if tc.claim != "" && tok.Claims()[tc.claim] != tc.want {
				t.Errorf("%s = %v, want %s", tc.claim, tok.Claims()[tc.claim], tc.want)
			}
		})
	}
	// A signature the signer did not make is not accepted: the verifier
	// checks. (A character inside the signature, whose bits all count.)
	forged := []byte(toks.Kite)
	if i := len(forged) - 10; forged[i] == 'A' {
		forged[i] = 'B'
	} else {
		forged[i] = 'A'
	}
	if _, err := v.Verify(context.Background(), string(forged)); tokens.CodeOf(err) != tokens.CodeBadSignature {
		t.Errorf("a token with another signature: %v, want %s", err, tokens.CodeBadSignature)
	}
}

// TestMetricReadsOneSampleOfAnExposition: the sample named with its
// labels, 0 when absent, not a sample whose name merely starts the same.
func TestMetricReadsOneSampleOfAnExposition(t *testing.T) {
	const exposition = `# HELP guestgate_checks_total Checks.
# TYPE guestgate_checks_total counter
guestgate_checks_total{decision="allow"} 3
guestgate_checks_total{decision="deny"} 1.5
guestgate_checks_total_extra 9
`
	for _, tc := range []struct {
		sample string
		want   float64
	}{
		{`guestgate_checks_total{decision="allow"}`, 3},
		{`guestgate_checks_total{decision="deny"}`, 1.5},
		{`guestgate_checks_total{decision="other"}`, 0},
		{`guestgate_checks_total`, 0},
	} {
		if got := Metric(t, exposition, tc.sample); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.sample, got, tc.want)
		}
	}
}
