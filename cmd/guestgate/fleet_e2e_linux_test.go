package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/tokens"
)

const fleetBundlePath = "/bundles/guestgate.tar.gz"

// fleet is two replicas sharing one Redis and one bundle server.
type fleet struct {
	a, b      *replica
	redis     *testsupport.Redis
	bundles   *testsupport.BundleServer
	key       testsupport.SigningKey
	policy    map[string]string // the shipped policies, as bundled
	dirA      string            // replica A's copy of the development setup
	revToken  string            // admin.revocation_token
	xbs       *e2e              // signs the development pool's tokens
	xbsSigner tokens.SigningKey
}

// fleetConfig is the development setup with its state on redis, its
// policy from the bundle server (persisted under persist), the revocation
// route on, and a per-client burst of 3 that refills once in 1000 s, so a
// test spends it before any refill.
func fleetConfig(redis *testsupport.Redis, srv *testsupport.BundleServer, key testsupport.SigningKey, tokenFile, persist string) map[string]string {
	pub, _ := json.Marshal(key.Public) // a JSON string is a YAML scalar
	return map[string]string{
		"  backend: embedded\n  dir: ../state": fmt.Sprintf(`  backend: redis
  redis:
    address: %s
    key_prefix: "fleet:"
admin:
  revocation_token_file: %s
services:
  bundles:
    url: %s
bundles:
  authz:
    service: bundles
    resource: %s
    persist: true
    signing: {keyid: ci}
    polling: {min_delay_seconds: 1, max_delay_seconds: 2, long_polling_timeout_seconds: 30}
keys:
  ci:
    algorithm: ES256
    key: %s
persistence_directory: %s
`, redis.Socket, tokenFile, srv.URL, fleetBundlePath, pub, persist),
		"issuer:\n  enabled: true": "issuer:\n  enabled: true\n  rate_limits:\n    per_client: {per_second: 0.001, burst: 3}\n    per_address: {per_second: 1000, burst: 1000}",
	}
}

func startFleet(t *testing.T) *fleet {
	t.Helper()
	redis, err := testsupport.StartRedis(t)
	if err != nil {
		t.Skip(err)
	}
	f := &fleet{redis: redis, key: testsupport.NewSigningKey(t), bundles: testsupport.StartBundleServer(t, true),
		revToken: strings.Repeat("r", 40)}
	f.policy = testsupport.DirFiles(t, filepath.Join(testsupport.RepoRoot(t), "policies"))
	f.bundles.Set(fleetBundlePath, testsupport.BuildPolicyBundle(t, f.policy, "rev-1", &f.key))
	tokenFile := filepath.Join(t.TempDir(), "revocation-token")
	if err := os.WriteFile(tokenFile, []byte(f.revToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var cfgA, cfgB string
	f.dirA, cfgA = testsupport.CopyDevelopment(t, fleetConfig(redis, f.bundles, f.key, tokenFile, t.TempDir()))
	_, cfgB = testsupport.CopyDevelopment(t, fleetConfig(redis, f.bundles, f.key, tokenFile, t.TempDir()))
	cfg, err := config.Load(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	if f.xbsSigner, err = tokens.LoadSigningKey(cfg.Minting.XBS.KeyFiles[0]); err != nil {
		t.Fatal(err)
	}
	f.xbs = &e2e{t: t}
	f.a, f.b = startReplica(t, "replica-a", cfgA), startReplica(t, "replica-b", cfgB)
	return f
}

// visitor is an ID token of the development pool for sub in widget
// W-DEMO: unbound, so its Kite channels are its own (ownership).
func (f *fleet) visitor(sub, jti string) string {
	claims := xbsClaims("W-DEMO")
	claims["sub"], claims["cognito:username"], claims["jti"] = sub, sub, jti
	return f.xbs.sign(f.xbsSigner, "", claims)
}

// TestTwoReplicasShareOneRedisAndOneBundleServer runs two `guestgate
// serve` processes on one redis-server and one bundle server: what one
// replica remembered, spent, claimed or revoked holds on the other, and
// both take the same bundles and refuse the same tampered one.
func TestTwoReplicasShareOneRedisAndOneBundleServer(t *testing.T) {
	f := startFleet(t)
	a, b := f.a, f.b
	for _, r := range []*replica{a, b} {
		if rd := r.readyz(); !rd.State.Healthy || !strings.HasPrefix(rd.State.Store, "redis ") || rd.Policy.Revision != "rev-1" {
			t.Fatalf("%s /readyz: state %+v, policy revision %q, want healthy redis and rev-1", r.name, rd.State, rd.Policy.Revision)
		}
	}

	t.Run("a SAT signature used on A is refused on B", func(t *testing.T) {
		const route = "/v1/accounts/dev-account/secure-anonymous/dev-provider/tokens"
		h := signedHeaders(t, "dev-admin", filepath.Join(f.dirA, "dev", "secrets", "sat-admin-dev.secret"))
		if st, body := send(t, "POST", "http://"+a.http+route, h, ""); st != 200 {
			t.Fatalf("SAT on A: %d %s", st, body)
		}
		if st, body := send(t, "POST", "http://"+b.http+route, h, ""); st != 401 || !strings.Contains(body, "signature_replayed") {
			t.Fatalf("the same signature on B: %d %s, want 401 signature_replayed", st, body)
		}
	})

	t.Run("a client's burst is one burst across the fleet", func(t *testing.T) {
		const route = "/v1/anonymous/widgets/W-DEMO/token"
		for i, r := range []*replica{a, b, a} {
			if st, body := send(t, "POST", "http://"+r.http+route, nil, ""); st != 200 {
				t.Fatalf("widget session %d of the burst of 3, on %s: %d %s", i+1, r.name, st, body)
			}
		}
		for _, r := range []*replica{b, a} {
			if st, body := send(t, "POST", "http://"+r.http+route, nil, ""); st != 429 {
				t.Fatalf("widget session past the fleet's burst, on %s: %d %s, want 429", r.name, st, body)
			}
		}
	})

	alice := f.visitor("11111111-aaaa-4000-8000-00000000f1ee", "fleet-alice")
	bob := f.visitor("22222222-bbbb-4000-8000-00000000f1ee", "fleet-bob")
	const channel = "kite-fleet-1"
	cmd := func(command, token string) httpCall {
		return httpCall{method: "POST", path: commandPath(channel, command), token: token}
	}
	expect := func(t *testing.T, r *replica, what string, c httpCall, want string) {
		t.Helper()
		if ok, reason := r.check(c); reason != want || ok != (want == "allowed") {
			t.Fatalf("%s on %s: allowed %v, reason %q, want %s", what, r.name, ok, reason, want)
		}
	}

	t.Run("a Kite channel created through A is its owner's through B", func(t *testing.T) {
		expect(t, a, "alice creates her channel", cmd("CreateKiteChannelCommand", alice), "allowed")
		expect(t, b, "alice in her channel", cmd("MarkReadCommand", alice), "allowed")
		for _, r := range []*replica{a, b} {
			expect(t, r, "bob in alice's channel", cmd("MarkReadCommand", bob), "channel_not_owned")
			expect(t, r, "bob creating alice's channel", cmd("CreateKiteChannelCommand", bob), "channel_owned_by_another")
		}
	})

	t.Run("a revocation through A denies on B", func(t *testing.T) {
		victim := f.visitor("33333333-cccc-4000-8000-00000000f1ee", "fleet-victim")
		getToken := httpCall{method: "POST", path: commandPath("", "GetTokenCommand"), token: victim}
		expect(t, b, "the victim before its revocation", getToken, "allowed")
		h := http.Header{"Authorization": {"Bearer " + f.revToken}, "Content-Type": {"application/json"}}
		if st, body := send(t, "POST", "http://"+a.admin+"/v1/revocations", h, `{"jti": "fleet-victim"}`); st != 200 && st != 201 {
			t.Fatalf("POST /v1/revocations on A: %d %s", st, body)
		}
		// Polled (state.stale_bound 1s): bounded, not timed.
		for _, r := range []*replica{b, a} {
			testsupport.EventuallyState(t, "the revocation in force on "+r.name, func() (bool, string) {
				ok, reason, id := r.checkID(getToken)
				if ok {
					return false, "still allowed"
				}
				d := r.decision(t, id)
				return reason == "invalid_token" && d.TokenError == "revoked", reason + " " + d.TokenError
			})
		}
		expect(t, b, "alice, not revoked", cmd("MarkReadCommand", alice), "allowed")
	})

	revisions := func() (bool, string) {
		var got []string
		for _, r := range []*replica{a, b} {
			rd := r.readyz()
			got = append(got, rd.Policy.Revision+" "+rd.Policy.LastError)
		}
		return false, strings.Join(got, " | ")
	}
	t.Run("a new signed bundle reaches both", func(t *testing.T) {
		f.policy["extra/data.json"] = `{"note": "rev-2"}`
		f.bundles.Set(fleetBundlePath, testsupport.BuildPolicyBundle(t, f.policy, "rev-2", &f.key))
		testsupport.EventuallyState(t, "rev-2 serving on both", func() (bool, string) {
			_, got := revisions()
			return got == "rev-2  | rev-2 ", got
		})
	})

	t.Run("a tampered bundle is refused by both while the last good serves", func(t *testing.T) {
		f.bundles.Set(fleetBundlePath, testsupport.TamperBundle(t, testsupport.BuildPolicyBundle(t, f.policy, "rev-3", &f.key), "data.json", `{}`))
		testsupport.EventuallyState(t, "the tampered bundle refused by both", func() (bool, string) {
			refused := true
			for _, r := range []*replica{a, b} {
				rd := r.readyz()
				refused = refused && rd.Policy.Revision == "rev-2" && rd.Policy.LastError != ""
			}
			_, got := revisions()
			return refused, got
		})
		for _, r := range []*replica{a, b} {
			expect(t, r, "alice in her channel on the last good bundle", cmd("MarkReadCommand", alice), "allowed")
			expect(t, r, "bob in alice's channel on the last good bundle", cmd("MarkReadCommand", bob), "channel_not_owned")
		}
	})
}
