package ext_authz

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/engine"
	"github.com/guestgate/guestgate/internal/testsupport"
)

// candidate is testPolicy's candidate: it denies /allow-plain with a
// reason of its own, computes /deny's reason from the request, and fails
// on /bool-allow (two values for one rule); every other path it decides as
// testPolicy does.
func candidate() string {
	p := strings.Replace(testPolicy, `decision := {"allowed": true, "headers": {"x-guestgate-subject": "tester"}} if {
	input.parsed_path == ["allow-plain"]
}`, `decision := {"allowed": false, "http_status": 403, "reason": "channel_not_bound"} if input.parsed_path == ["allow-plain"]`, 1)
	p = strings.Replace(p, `decision := {"allowed": false, "http_status": 403, "reason": "command_not_allowed", "headers": {"x-extra": "1"}} if {
	input.parsed_path == ["deny"]
}`, `decision := {"allowed": false, "http_status": 403, "reason": concat("_", ["made", input.attributes.request.http.method])} if input.parsed_path == ["deny"]`, 1)
	p = strings.Replace(p, `decision := true if input.parsed_path == ["bool-allow"]`,
		`decision := true if input.parsed_path == ["bool-allow"]

decision := false if input.parsed_path == ["bool-allow"]`, 1)
	return p
}

// shadowRecorder is a ShadowObserver that keeps the counts.
type shadowRecorder struct {
	mu      sync.Mutex
	pairs   map[[2]string]int
	dropped int
}

func newShadowRecorder() *shadowRecorder { return &shadowRecorder{pairs: map[[2]string]int{}} }

func (r *shadowRecorder) ShadowDecided(live, shadow string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pairs[[2]string{live, shadow}]++
}

func (r *shadowRecorder) ShadowDropped() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropped++
}

func (r *shadowRecorder) counts() (map[[2]string]int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[[2]string]int, len(r.pairs))
	for k, v := range r.pairs {
		out[k] = v
	}
	return out, r.dropped
}

// shadowChecker is a Checker deciding with testPolicy, shadowed by shadow
// at sample 1 through a queue of queue places, logging every decision to
// logs. Its worker is not running: a test drains the queue (drainShadow)
// or runs RunShadow.
func shadowChecker(t *testing.T, shadow string, queue int) (*Checker, *shadowRecorder, *testsupport.LogBuffer) {
	t.Helper()
	live, dir := policyEngine(t, testPolicy)
	cand, _ := policyEngine(t, shadow)
	cfg, err := config.Parse([]byte("decision_log:\n  full: true\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testsupport.LogBuffer{}
	c := New(Settings{Check: cfg.Check, DecisionLog: cfg.DecisionLog}, Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	c.SetEngine(live)
	rec := newShadowRecorder()
	c.SetShadow(ShadowOptions{Engine: cand, Sample: 1, Queue: queue, Observer: rec})
	return c, rec, logs
}

// drainShadow decides every queued check with the shadow, as RunShadow's
// worker does, in the test's goroutine.
func drainShadow(c *Checker) {
	sh := c.shadow.Load()
	for len(sh.queue) > 0 {
		c.runShadowJob(context.Background(), sh, <-sh.queue)
	}
}

// logLines are the decision log's lines with the given message.
func logLines(t *testing.T, logs *testsupport.LogBuffer, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func TestShadowDisagreementsAreCountedAndLogged(t *testing.T) {
	c, rec, logs := shadowChecker(t, candidate(), 16)
	const secret = "s3cr3t-token-value"
	requests := []struct {
		path, id     string // ids as Envoy's x-request-id (hex and dashes)
		live, shadow string
	}{
		{"/allow", "aa-01", ReasonAllowed, ReasonAllowed},
		{"/allow-plain", "d1-01", ReasonAllowed, "channel_not_bound"},
		{"/allow-plain", "d1-02", ReasonAllowed, "channel_not_bound"},
		{"/deny", "cc-01", "command_not_allowed", ShadowLabelOther},
		{"/bool-allow", "bb-01", ReasonAllowed, ReasonPolicyError},
		{"/login", "aa-02", "missing_token", "missing_token"},
	}
	for _, r := range requests {
		req := checkRequest("POST", r.path+"?name=visitor", map[string]string{
			"x-request-id": r.id, "authorization": "Bearer " + secret, "cookie": "session=" + secret}, `{"secret":"`+secret+`"}`)
		if d := c.Decide(context.Background(), req); d.Reason != r.live {
			t.Fatalf("%s: live reason %q, want %q", r.path, d.Reason, r.live)
		}
	}
	drainShadow(c)

	pairs, dropped := rec.counts()
	want := map[[2]string]int{
		{ReasonAllowed, ReasonAllowed}:            1,
		{ReasonAllowed, "channel_not_bound"}:      2,
		{"command_not_allowed", ShadowLabelOther}: 1,
		{ReasonAllowed, ReasonPolicyError}:        1,
		{"missing_token", "missing_token"}:        1,
	}
	if fmt.Sprint(pairs) != fmt.Sprint(want) || dropped != 0 {
		t.Fatalf("counted %v (dropped %d), want %v", pairs, dropped, want)
	}

	lines := logLines(t, logs, "shadow decision differs")
	differs := map[string]map[string]any{}
	for _, l := range lines {
		differs[l["request_id"].(string)] = l
	}
	if len(lines) != 4 || len(differs) != 4 {
		t.Fatalf("want one line per disagreement (4), got %d:\n%s", len(lines), logs.String())
	}
	for _, r := range requests {
		l, logged := differs[r.id]
		if logged != (r.live != r.shadow) {
			t.Fatalf("%s: logged %v, want a line exactly when the answers differ", r.id, logged)
		}
		if !logged {
			continue
		}
		if l["live_reason"] != r.live || l["path"] != r.path || l["live_revision"] == "" || l["shadow_revision"] == "" || l["live_revision"] == l["shadow_revision"] {
			t.Fatalf("%s: line %v", r.id, l)
		}
		if r.shadow != ShadowLabelOther && l["shadow_reason"] != r.shadow {
			t.Fatalf("%s: shadow reason %v, want %s", r.id, l["shadow_reason"], r.shadow)
		}
	}
	// The log carries the precise reason a label folds into other.
	if got := differs["cc-01"]["shadow_reason"]; got != "made_POST" {
		t.Fatalf("shadow reason logged %v, want the precise made_POST", got)
	}
	if strings.Contains(logs.String(), secret) || strings.Contains(logs.String(), "visitor") {
		t.Fatalf("a token, cookie, query or body reached the log:\n%s", logs.String())
	}
}

// TestShadowNeverChangesTheLiveAnswer: with a shadow that disagrees, fails
// or cannot keep up, every live answer is the one given without a shadow.
func TestShadowNeverChangesTheLiveAnswer(t *testing.T) {
	plain := startHarness(t, testPolicy, true).checker
	shadowed, _, _ := shadowChecker(t, candidate(), 2)
	for _, path := range []string{"/allow?name=a", "/allow-plain", "/deny", "/bool-allow", "/wrong-type", "/conflict", "/login", "/nothing", "/%2e%2e/x"} {
		for round := range 3 { // the queue fills after two: the rest are dropped
			want := plain.Decide(context.Background(), checkRequest("GET", path, map[string]string{"x-request-id": "0a1b"}, ""))
			got := shadowed.Decide(context.Background(), checkRequest("GET", path, map[string]string{"x-request-id": "0a1b"}, ""))
			if !proto.Equal(got.CheckResponse(), want.CheckResponse()) {
				t.Fatalf("%s round %d: answer with a shadow %v, without %v", path, round, got.CheckResponse(), want.CheckResponse())
			}
		}
	}
}

func TestShadowQueueDropsAndCountsWhatItCannotHold(t *testing.T) {
	c, rec, _ := shadowChecker(t, candidate(), 3)
	for range 10 {
		c.Decide(context.Background(), checkRequest("GET", "/allow-plain", nil, ""))
	}
	// Denied before any policy ran: nothing to shadow, nothing dropped.
	c.Decide(context.Background(), checkRequest("GET", "/a/../b", nil, ""))
	if _, dropped := rec.counts(); dropped != 7 {
		t.Fatalf("dropped %d, want 7 (10 checks, 3 places)", dropped)
	}
	drainShadow(c)
	pairs, _ := rec.counts()
	if n := pairs[[2]string{ReasonAllowed, "channel_not_bound"}]; n != 3 || len(pairs) != 1 {
		t.Fatalf("shadowed %v, want the 3 queued", pairs)
	}
}

func TestShadowSampleZeroShadowsNothing(t *testing.T) {
	c, rec, _ := shadowChecker(t, candidate(), 8)
	c.shadow.Load().sample = 0
	for range 5 {
		c.Decide(context.Background(), checkRequest("GET", "/allow-plain", nil, ""))
	}
	if n := len(c.shadow.Load().queue); n != 0 {
		t.Fatalf("%d checks queued at sample 0", n)
	}
	if pairs, dropped := rec.counts(); len(pairs) != 0 || dropped != 0 {
		t.Fatalf("counted %v, dropped %d", pairs, dropped)
	}
}

// TestRunShadowDecidesQueuedChecksInItsOwnGoroutine is the worker as it
// serves: checks answered over gRPC, the shadow's counts arriving later.
func TestRunShadowDecidesQueuedChecksInItsOwnGoroutine(t *testing.T) {
	c, rec, _ := shadowChecker(t, candidate(), 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.RunShadow(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	client := loopback(t, c.Register)
	h := &harness{client: authv3.NewAuthorizationClient(client)}
	for range 5 {
		h.check(t, checkRequest("POST", "/allow-plain", nil, ""))
	}
	// The worker reacts in its own goroutine: wait for its counts.
	testsupport.EventuallyState(t, "the shadow to decide 5 checks", func() (bool, string) {
		pairs, _ := rec.counts()
		return pairs[[2]string{ReasonAllowed, "channel_not_bound"}] == 5, fmt.Sprint(pairs)
	})
}

func TestInspectShowsBothAnswersAndWhyEachDecided(t *testing.T) {
	c, rec, _ := shadowChecker(t, candidate(), 8)
	insp := c.Inspect(context.Background(), checkRequest("GET", "/allow-plain", map[string]string{"authorization": "Bearer abc.def.ghi"}, ""),
		InspectOptions{Explain: true, Input: true})
	if !insp.Decision.Allowed || insp.Shadow == nil || insp.Shadow.Allowed || insp.Shadow.Reason != "channel_not_bound" {
		t.Fatalf("live %+v shadow %+v", insp.Decision, insp.Shadow)
	}
	if insp.Explanation == nil || insp.ShadowExplanation == nil || insp.ExplainError != "" {
		t.Fatalf("explanations %v %v: %s", insp.Explanation, insp.ShadowExplanation, insp.ExplainError)
	}
	if st := insp.ShadowExplanation.Steps; len(st) == 0 || st[0].Rule != engine.DefaultQuery || st[0].Expr != `input.parsed_path == ["allow-plain"]` {
		t.Fatalf("the shadow's explanation does not name its deciding rule:\n%s", insp.ShadowExplanation.Text())
	}
	b, _ := json.Marshal(insp.Input)
	if !strings.Contains(string(b), `"authorization":"Bearer \u003credacted\u003e"`) || strings.Contains(string(b), "abc.def.ghi") || !strings.Contains(string(b), `"parsed_path":["allow-plain"]`) {
		t.Fatalf("input %s: want every part, the credential redacted", b)
	}
	// Inspected checks are shadowed at once, counted, and never queued.
	if pairs, _ := rec.counts(); pairs[[2]string{ReasonAllowed, "channel_not_bound"}] != 1 || len(c.shadow.Load().queue) != 0 {
		t.Fatalf("counted %v, queued %d", pairs, len(c.shadow.Load().queue))
	}
	bad := c.Inspect(context.Background(), checkRequest("GET", "/a/../b", nil, ""), InspectOptions{Explain: true})
	if !bad.NoPolicyRan || bad.Shadow != nil || bad.Explanation != nil || !strings.Contains(bad.ExplainError, ReasonBadPath) {
		t.Fatalf("a request denied before the policy: %+v", bad)
	}
}
