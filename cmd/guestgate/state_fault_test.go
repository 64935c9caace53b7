package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/state"
	"github.com/guestgate/guestgate/tokens"
	"github.com/guestgate/guestgate/wiring"
)

// The phases of the fault test. Odd phases are transitions (Redis stopping,
// the clock moving, Redis starting): a request is held to a phase's
// expectations only when it started and ended in that same even phase, so
// it saw nothing but that phase.
const (
	phaseUp       = 0 // Redis serving
	phaseDownNew  = 2 // Redis stopped, the clock within the stale bound of the last answers
	phaseDownOld  = 4 // Redis stopped, the clock past the stale bound
	phaseRecovery = 6 // Redis started again (the client reconnects on its own)
)

// loadClass is one kind of check of the load and what each phase must
// answer it. Every phase's answer is one reason: a request needing
// state that is answered "allowed" while Redis is down is allowed only as
// the stale bound allows it (phaseDownNew) and only for what the replica
// confirmed before (an ownership it required, the deny-list it read).
type loadClass struct {
	name   string
	call   httpCall
	fromUp bool           // sent from phaseUp (else from phaseDownNew: never read while Redis served)
	want   map[int]string // phase -> the only answer allowed in it
	never  bool           // never allowed, in any phase or transition
	recov  string         // what phaseRecovery must reach
}

type loadResult struct {
	class      int
	start, end int32
	allowed    bool
	reason     string
	err        error
	took       time.Duration
}

// TestRedisStoppedAndStartedMidLoadDeniesNothingWronglyAndRecovers runs a
// load of checks that need state (ownership requirements, the deny-list)
// and checks that need none against a sidecar on Redis, stops Redis mid-load
// and starts it again. The store's clock is the test's and stands still, so
// "within the stale bound" is a phase of the test, not a race with the wall
// clock.
func TestRedisStoppedAndStartedMidLoadDeniesNothingWronglyAndRecovers(t *testing.T) {
	redis, err := testsupport.StartRedis(t)
	if err != nil {
		t.Skip(err)
	}
	_, cfgPath := testsupport.CopyDevelopment(t, map[string]string{
		"  backend: embedded\n  dir: ../state": fmt.Sprintf("  backend: redis\n  redis:\n    address: %s", redis.Socket),
	})
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now()
	var advanced atomic.Int64
	clock := func() time.Time { return base.Add(time.Duration(advanced.Load())) }
	store, err := wiring.OpenState(cfg, wiring.StateOptions{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	// Another replica's handle on the same Redis: what it writes this
	// sidecar has never read.
	other, err := wiring.OpenState(cfg, wiring.StateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	signer, err := wiring.Signer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	xbsKey, err := tokens.LoadSigningKey(cfg.Minting.XBS.KeyFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	s, _, _ := runSidecarOn(t, cfg, nil, store)
	conn, err := grpc.NewClient(s.grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)

	e := &e2e{t: t}
	visitor := func(sub, jti string) string {
		claims := xbsClaims("W-DEMO")
		claims["sub"], claims["cognito:username"], claims["jti"] = sub, sub, jti
		return e.sign(xbsKey, "", claims)
	}
	const aliceSub = "11111111-aaaa-4000-8000-0000000fa017"
	alice, bob := visitor(aliceSub, "fault-alice"), visitor("22222222-bbbb-4000-8000-0000000fa017", "fault-bob")
	victim := visitor("33333333-cccc-4000-8000-0000000fa017", "fault-victim")
	link := e.issued(signer.MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryPublicLink, ChannelID: "public-lobby"}))
	cmd := func(channel, command, token string) httpCall {
		return httpCall{method: "POST", path: commandPath(channel, command), token: token}
	}
	ask := func(c httpCall) (bool, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := client.Check(ctx, checkRequestFor(c))
		if err != nil {
			return false, "", err
		}
		if resp.GetOkResponse() != nil {
			return true, "allowed", nil
		}
		var body struct{ Reason string }
		_ = json.Unmarshal([]byte(resp.GetDeniedResponse().GetBody()), &body)
		return false, body.Reason, nil
	}

	// Before the load: alice's own channel here, confirmed by a
	// requirement; her second one through the other replica only; the
	// victim revoked, and the revocation seen here.
	ctx := context.Background()
	const cached, elsewhere = "kite-fault-here", "kite-fault-elsewhere"
	for _, c := range []struct {
		call httpCall
		want string
	}{{cmd(cached, "CreateKiteChannelCommand", alice), "allowed"}, {cmd(cached, "MarkReadCommand", alice), "allowed"}} {
		if _, got, err := ask(c.call); err != nil || got != c.want {
			t.Fatalf("%s: %q %v, want %s", c.call.path, got, err, c.want)
		}
	}
	aliceOwner := state.Owner{Issuer: devXBSIssuer, Subject: aliceSub, Widget: "W-DEMO"}
	if out, err := other.Claim(ctx, elsewhere, aliceOwner, 24*time.Hour, 20); err != nil || out != state.Claimed {
		t.Fatalf("the other replica's claim: %v %v", out, err)
	}
	if err := other.Revoke(ctx, state.Revocation{Kind: state.RevokeToken, Value: "fault-victim", Until: time.Now().Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	getToken := cmd("", "GetTokenCommand", victim)
	testsupport.EventuallyState(t, "the victim's revocation seen", func() (bool, string) {
		ok, reason, err := ask(getToken)
		return !ok && reason == "invalid_token", fmt.Sprint(reason, err)
	})

	const unavailable = "state_unavailable"
	classes := []loadClass{
		{name: "alice in her channel, confirmed here", call: cmd(cached, "MarkReadCommand", alice), fromUp: true,
			want: map[int]string{phaseUp: "allowed", phaseDownNew: "allowed", phaseDownOld: unavailable}, recov: "allowed"},
		{name: "alice in her channel, never read here", call: cmd(elsewhere, "MarkReadCommand", alice),
			want: map[int]string{phaseDownNew: unavailable, phaseDownOld: unavailable}, recov: "allowed"},
		{name: "bob in alice's channel", call: cmd(cached, "MarkReadCommand", bob), fromUp: true, never: true,
			want: map[int]string{phaseUp: "channel_not_owned", phaseDownNew: unavailable, phaseDownOld: unavailable}, recov: "channel_not_owned"},
		{name: "the revoked token", call: getToken, fromUp: true, never: true,
			want: map[int]string{phaseUp: "invalid_token", phaseDownNew: "invalid_token", phaseDownOld: unavailable}, recov: "invalid_token"},
		{name: "a public link (the deny-list only)", call: cmd("public-lobby", "JoinChannelCommand", link), fromUp: true,
			want: map[int]string{phaseUp: "allowed", phaseDownNew: "allowed", phaseDownOld: unavailable}, recov: "allowed"},
		{name: "no token (no state)", call: cmd(cached, "MarkReadCommand", ""), fromUp: true, never: true,
			want: map[int]string{phaseUp: "missing_token", phaseDownNew: "missing_token", phaseDownOld: "missing_token"}, recov: "missing_token"},
		{name: "a forged token (no state)", call: cmd(cached, "MarkReadCommand", alice[:len(alice)-4]+"AAAA"), fromUp: true, never: true,
			want: map[int]string{phaseUp: "invalid_token", phaseDownNew: "invalid_token", phaseDownOld: "invalid_token"}, recov: "invalid_token"},
	}

	metricsBefore := testsupport.Scrape(t, metricsURL(s))
	var phase atomic.Int32
	var mu sync.Mutex
	var results []loadResult
	counts := func(p int32, want func(loadResult) bool) map[int]int {
		mu.Lock()
		defer mu.Unlock()
		n := map[int]int{}
		for _, r := range results {
			if r.start == p && r.end == p && (want == nil || want(r)) {
				n[r.class]++
			}
		}
		return n
	}
	stop, down := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range classes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if !c.fromUp {
					// Not before Redis is down: a read would cache it.
					select {
					case <-down:
					case <-stop:
						return
					}
				}
				p := phase.Load()
				began := time.Now()
				ok, reason, err := ask(c.call)
				r := loadResult{class: i, start: p, end: phase.Load(), allowed: ok, reason: reason, err: err, took: time.Since(began)}
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		}()
	}
	// Each phase lasts until every class it sends has been answered 20
	// times within it: counted, not timed.
	await := func(p int32) {
		t.Helper()
		testsupport.EventuallyState(t, fmt.Sprintf("20 answers of every class in phase %d", p), func() (bool, string) {
			n := counts(p, nil)
			for i, c := range classes {
				if _, sent := c.want[int(p)]; sent && n[i] < 20 {
					return false, fmt.Sprintf("%s: %d", c.name, n[i])
				}
			}
			return true, ""
		})
	}
	await(phaseUp)
	phase.Store(phaseUp + 1)
	redis.Stop(t)
	phase.Store(phaseDownNew)
	close(down)
	await(phaseDownNew)
	phase.Store(phaseDownNew + 1)
	advanced.Store(int64(state.DefaultStaleBound + time.Millisecond))
	phase.Store(phaseDownOld)
	await(phaseDownOld)
	phase.Store(phaseDownOld + 1)
	redis.Start(t)
	phase.Store(phaseRecovery)
	// Recovered without a restart: every class answers as with Redis up.
	testsupport.EventuallyState(t, "every class answered as with Redis up", func() (bool, string) {
		n := counts(phaseRecovery, func(r loadResult) bool { return r.reason == classes[r.class].recov })
		for i, c := range classes {
			if n[i] == 0 {
				return false, c.name
			}
		}
		return true, ""
	})
	close(stop)
	wg.Wait()
	metricsAfter := testsupport.Scrape(t, metricsURL(s))

	// No wrong allow; every phase's answers exactly as its class says.
	byReason := map[string]int{}
	var longest [phaseRecovery + 1]time.Duration
	for _, r := range results {
		c := classes[r.class]
		if r.err != nil {
			t.Fatalf("%s (phase %d-%d): no answer: %v", c.name, r.start, r.end, r.err)
		}
		byReason[r.reason]++
		longest[r.start] = max(longest[r.start], r.took)
		if r.allowed && c.never {
			t.Errorf("%s allowed (phase %d-%d)", c.name, r.start, r.end)
		}
		if r.allowed && !c.fromUp && r.end < phaseRecovery {
			t.Errorf("%s allowed while Redis was down (phase %d-%d)", c.name, r.start, r.end)
		}
		if want, held := c.want[int(r.start)]; held && r.start == r.end && r.reason != want {
			t.Errorf("%s in phase %d: %q, want %q", c.name, r.start, r.reason, want)
		}
	}
	// The outage's allows of what needs state are the cache's, counted.
	cacheAllows := counts(phaseDownNew, func(r loadResult) bool { return r.allowed && r.class == 0 })[0]
	if d := testsupport.Metric(t, metricsAfter, "guestgate_state_cache_answers_total") - testsupport.Metric(t, metricsBefore, "guestgate_state_cache_answers_total"); d < float64(cacheAllows) {
		t.Errorf("cache answers counted %v, fewer than the %d allows of a confirmed ownership while Redis was down", d, cacheAllows)
	}
	// Every answer is counted with its reason.
	before, after := checksByReason(metricsBefore), checksByReason(metricsAfter)
	for reason, n := range byReason {
		if got := after[reason] - before[reason]; got != float64(n) {
			t.Errorf("guestgate_checks_total{reason=%q} rose by %v, the load had %d", reason, got, n)
		}
	}
	if byReason[unavailable] == 0 {
		t.Error("no state_unavailable answers: the outage was not seen")
	}
	if v := testsupport.Metric(t, metricsAfter, "guestgate_state_reconnects_total"); v < 1 {
		t.Errorf("guestgate_state_reconnects_total = %v, want a reconnect", v)
	}
	_, rd := readyz(t, s)
	if !rd.Ready || !rd.State.Healthy {
		t.Errorf("/readyz after the outage: ready %v, state %+v", rd.Ready, rd.State)
	}
	// Reported, not asserted (speed is the benchmarks').
	t.Logf("%d checks %v; the longest wait by phase (up, down within the bound, down past it, recovery): %v %v %v %v",
		len(results), byReason, longest[phaseUp], longest[phaseDownNew], longest[phaseDownOld], longest[phaseRecovery])
}

// checksByReason sums guestgate_checks_total by its reason label.
func checksByReason(exposition string) map[string]float64 {
	sums := map[string]float64{}
	for _, line := range strings.Split(exposition, "\n") {
		if !strings.HasPrefix(line, "guestgate_checks_total{") {
			continue
		}
		m := reasonLabel.FindStringSubmatch(line)
		i := strings.LastIndexByte(line, ' ')
		if m == nil || i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			sums[m[1]] += v
		}
	}
	return sums
}

var reasonLabel = regexp.MustCompile(`reason="([^"]*)"`)
