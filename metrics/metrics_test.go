package metrics

import (
	"errors"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/guestgate/guestgate/internal/testsupport"
)

// exposition is m's /metrics, served by its handler on loopback and read
// as Prometheus reads it.
func exposition(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	return testsupport.Scrape(t, srv.URL)
}

func TestChecksAreCountedByDecisionReasonAndKind(t *testing.T) {
	m := New()
	m.Check(true, "allowed", "xbs_anonymous", 40*time.Microsecond)
	m.Check(true, "allowed", "xbs_anonymous", 60*time.Microsecond)
	m.Check(false, "missing_token", "", time.Millisecond)
	if got := testutil.ToFloat64(m.checks.WithLabelValues("allow", "allowed", "xbs_anonymous")); got != 2 {
		t.Errorf("allows = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.checks.WithLabelValues("deny", "missing_token", "none")); got != 1 {
		t.Errorf("denials without a token = %v, want 1", got)
	}
	out := exposition(t, m)
	for _, want := range []string{
		`guestgate_check_duration_seconds_count{decision="allow"} 2`,
		`guestgate_check_duration_seconds_count{decision="deny"} 1`,
		"go_goroutines ",
		"process_start_time_seconds ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestReloadsCountRefusalsAndTrackTheServingRevision(t *testing.T) {
	m := New()
	if out := exposition(t, m); !strings.Contains(out, `guestgate_policy_reloads_total{result="refused"} 0`) {
		t.Fatal("refusal counter not exported before the first refusal")
	}
	m.PolicyReload("rev-a", nil)
	m.PolicyReload("rev-a", errors.New("authz.rego:3: parse error"))
	m.PolicyReload("rev-b", nil)
	m.ConfigReload(nil)
	m.ConfigReload(errors.New("listen: needs a restart"))
	m.ConfigReload(errors.New("tokens.issuers[0].kind"))
	out := exposition(t, m)
	for _, want := range []string{
		`guestgate_policy_reloads_total{result="ok"} 2`,
		`guestgate_policy_reloads_total{result="refused"} 1`,
		`guestgate_config_reloads_total{result="ok"} 1`,
		`guestgate_config_reloads_total{result="refused"} 2`,
		`guestgate_policy_revision_info{revision="rev-b"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, `revision="rev-a"`) {
		t.Error("a revision no longer serving is still exported")
	}
}

func TestCacheJWKSAndMintsAreCounted(t *testing.T) {
	m := New()
	m.CacheHit()
	m.CacheHit()
	m.CacheMiss()
	m.JWKSFetch("https://pool.example/jwks.json", nil)
	m.JWKSFetch("https://pool.example/jwks.json", errors.New("503"))
	m.Minted("anonymous_widget", ResultOK)
	m.Minted("anonymous_widget", "widget_disabled")
	m.Minted("guest_login", ResultOK)
	for name, tc := range map[string]struct {
		got, want float64
	}{
		"cache hits":      {testutil.ToFloat64(m.cacheHits), 2},
		"cache misses":    {testutil.ToFloat64(m.cacheMisses), 1},
		"jwks fetches":    {testutil.ToFloat64(m.jwksFetches.WithLabelValues("https://pool.example/jwks.json")), 2},
		"jwks failures":   {testutil.ToFloat64(m.jwksFailures.WithLabelValues("https://pool.example/jwks.json")), 1},
		"widget mints":    {testutil.ToFloat64(m.mints.WithLabelValues("anonymous_widget", ResultOK)), 1},
		"widget refusals": {testutil.ToFloat64(m.mints.WithLabelValues("anonymous_widget", "widget_disabled")), 1},
		"login mints":     {testutil.ToFloat64(m.mints.WithLabelValues("guest_login", ResultOK)), 1},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", name, tc.got, tc.want)
		}
	}
}

func TestEachMetricsHasItsOwnRegistry(t *testing.T) {
	a, b := New(), New()
	a.CacheHit()
	if testutil.ToFloat64(b.cacheHits) != 0 {
		t.Fatal("two Metrics share a counter")
	}
}

func TestReasonLabelsAreBounded(t *testing.T) {
	m := New()
	for i := range MaxReasons + 50 {
		m.Check(false, "reason_"+strconv.Itoa(i), "", time.Microsecond)
	}
	m.Check(false, "reason_0", "", time.Microsecond)
	if got := testutil.ToFloat64(m.checks.WithLabelValues("deny", OtherReason, "none")); got != 50 {
		t.Errorf("reasons beyond the bound = %v, want 50 counted as %q", got, OtherReason)
	}
	if got := testutil.ToFloat64(m.checks.WithLabelValues("deny", "reason_0", "none")); got != 2 {
		t.Errorf("a known reason = %v, want 2", got)
	}
	if n := testutil.CollectAndCount(m.checks); n != MaxReasons+1 {
		t.Errorf("%d series, want %d", n, MaxReasons+1)
	}
}

func TestShadowAndOPADecisionLogAreCounted(t *testing.T) {
	m := New()
	m.ShadowDecided("allowed", "allowed")
	m.ShadowDecided("allowed", "channel_not_bound")
	m.ShadowDecided("allowed", "channel_not_bound")
	m.ShadowDropped()
	m.ShadowReload(nil)
	m.ShadowReload(errors.New("candidate/authz.rego:1: parse error"))
	m.OPALogSent(5)
	m.OPALogDropped("buffer_full", 3)
	m.OPALogUploadFailed()
	out := exposition(t, m)
	for _, want := range []string{
		`guestgate_shadow_decisions_total{live="allowed",shadow="allowed"} 1`,
		`guestgate_shadow_decisions_total{live="allowed",shadow="channel_not_bound"} 2`,
		`guestgate_shadow_dropped_total 1`,
		`guestgate_shadow_policy_reloads_total{result="ok"} 1`,
		`guestgate_shadow_policy_reloads_total{result="refused"} 1`,
		`guestgate_opa_decision_logs_sent_total 5`,
		`guestgate_opa_decision_logs_dropped_total{reason="buffer_full"} 3`,
		`guestgate_opa_decision_log_upload_failures_total 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestLogOutputDropsAreCounted(t *testing.T) {
	m := New()
	if out := exposition(t, m); !strings.Contains(out, "guestgate_log_lines_dropped_total 0") {
		t.Errorf("/metrics without a log output lacks guestgate_log_lines_dropped_total 0")
	}
	m.LogOutput(func() LogOutputStats { return LogOutputStats{Dropped: 7, WriteErrors: 2} })
	out := exposition(t, m)
	for _, want := range []string{"guestgate_log_lines_dropped_total 7", "guestgate_log_write_errors_total 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
