// Package metrics holds guestgate's Prometheus metrics, in a registry of
// their own (never the global one), served on the admin listener's
// /metrics.
//
// It imports nothing of guestgate's: the packages that produce the events
// (ext_authz, engine, tokens, the issuer) stay free of Prometheus, and cmd
// wires their hooks and observer interfaces to the methods here. Every
// method is safe for concurrent use and cheap enough for the request path.
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are one guestgate's metrics.
type Metrics struct {
	reg *prometheus.Registry

	checks        *prometheus.CounterVec
	checkDuration *prometheus.HistogramVec
	cacheHits     prometheus.Counter
	cacheMisses   prometheus.Counter
	jwksFetches   *prometheus.CounterVec
	jwksFailures  *prometheus.CounterVec
	policyReloads *prometheus.CounterVec
	configReloads *prometheus.CounterVec
	policyInfo    *prometheus.GaugeVec
	mints         *prometheus.CounterVec

	shadowDecisions *prometheus.CounterVec
	shadowDropped   prometheus.Counter
	shadowReloads   *prometheus.CounterVec
	opaLogSent      prometheus.Counter
	opaLogDropped   *prometheus.CounterVec
	opaLogFailures  prometheus.Counter
	planFallbacks   prometheus.Counter // evaluator.go
	state           stateMetrics       // state.go
	logOutput       logOutputMetrics   // logoutput.go

	mu       sync.Mutex // guards revision and reasons
	revision string
	reasons  map[string]bool // the reason labels in use
}

// MaxReasons bounds the distinct reason labels of guestgate_checks_total.
// Reasons are the policy's: one built from request data would otherwise
// grow the registry without bound. Reasons beyond it are counted as
// OtherReason (the decision log keeps the precise one).
const MaxReasons = 256

// OtherReason is the reason label of reasons beyond MaxReasons.
const OtherReason = "other"

// Outcomes of a reload and of a mint.
const (
	ResultOK      = "ok"
	ResultRefused = "refused"
)

// New registers guestgate's metrics, with the Go runtime and process
// collectors, in a new registry.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), reasons: map[string]bool{}}
	m.checks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "guestgate_checks_total",
		Help: "Checks answered, by decision (allow, deny), precise reason and token kind (none when no token verified).",
	}, []string{"decision", "reason", "kind"})
	m.checkDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "guestgate_check_duration_seconds",
		Help: "Time to answer a check, from request to decision, by decision.",
		// 25µs to ~1.6s: a cached token and a prepared query answer in
		// tens of microseconds; a JWKS fetch on an unknown kid takes longer.
		Buckets: prometheus.ExponentialBuckets(25e-6, 2, 17),
	}, []string{"decision"})
	m.cacheHits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "guestgate_token_cache_hits_total",
		Help: "Tokens answered from the verified-token cache.",
	})
	m.cacheMisses = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "guestgate_token_cache_misses_total",
		Help: "Tokens not in the verified-token cache (verified in full).",
	})
	m.jwksFetches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "guestgate_jwks_fetches_total",
		Help: "Fetches of a trusted issuer's JWKS URL, successful or not.",
	}, []string{"url"})
	m.jwksFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "guestgate_jwks_fetch_failures_total",
		Help: "Fetches of a JWKS URL that failed (the last good keys keep serving).",
	}, []string{"url"})
	m.policyReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "guestgate_policy_reloads_total",
		Help: "Policy load attempts, by result: ok (a revision serves) or refused (the last good one keeps serving).",
	}, []string{"result"})
	m.configReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "guestgate_config_reloads_total",
		Help: "Config reload attempts, by result: ok or refused (the last good config keeps serving).",
	}, []string{"result"})
	m.policyInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "guestgate_policy_revision_info",
		Help: "The serving policy revision, as a label; the value is always 1.",
	}, []string{"revision"})
	m.mints = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "guestgate_mints_total",
		Help: "Mint requests on the issuer routes, by route and outcome (ok, or why it was refused).",
	}, []string{"route", "outcome"})
	m.shadowDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "guestgate_shadow_decisions_total",
		Help: "Checks the shadow policy decided too, by the live and the shadow reason (other: a reason outside the policies' own literals); live != shadow is a disagreement.",
	}, []string{"live", "shadow"})
	m.shadowDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "guestgate_shadow_dropped_total",
		Help: "Sampled checks the shadow policy did not decide because its queue was full.",
	})
	m.shadowReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "guestgate_shadow_policy_reloads_total",
		Help: "Shadow policy load attempts, by result: ok or refused (the last good shadow revision keeps deciding).",
	}, []string{"result"})
	m.opaLogSent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "guestgate_opa_decision_logs_sent_total",
		Help: "Decision log events the OPA decision-log endpoint accepted.",
	})
	m.opaLogDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "guestgate_opa_decision_logs_dropped_total",
		Help: "Decision log events never sent, by reason: buffer_full, rejected (a 4xx), shutdown, encoding.",
	}, []string{"reason"})
	m.opaLogFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "guestgate_opa_decision_log_upload_failures_total",
		Help: "Uploads to the OPA decision-log endpoint that failed and were retried.",
	})
	// The result labels exist from the start, so a rate() over them is
	// defined before the first refusal.
	for _, r := range []string{ResultOK, ResultRefused} {
		m.policyReloads.WithLabelValues(r)
		m.configReloads.WithLabelValues(r)
	}
	m.planFallbacks = prometheus.NewCounter(planFallbacksOpts)
	m.registerState()
	m.registerLogOutput()
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.checks, m.checkDuration, m.cacheHits, m.cacheMisses, m.jwksFetches, m.jwksFailures,
		m.policyReloads, m.configReloads, m.policyInfo, m.mints,
		m.shadowDecisions, m.shadowDropped, m.shadowReloads, m.opaLogSent, m.opaLogDropped, m.opaLogFailures,
		m.planFallbacks,
	)
	return m
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry is the registry the metrics live in.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Check counts one answered check. kind is "" when no token verified.
func (m *Metrics) Check(allowed bool, reason, kind string, latency time.Duration) {
	decision := "deny"
	if allowed {
		decision = "allow"
	}
	if kind == "" {
		kind = "none"
	}
	m.checks.WithLabelValues(decision, m.reasonLabel(reason), kind).Inc()
	m.checkDuration.WithLabelValues(decision).Observe(latency.Seconds())
}

func (m *Metrics) reasonLabel(reason string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reasons[reason] {
		return reason
	}
	if len(m.reasons) >= MaxReasons {
		return OtherReason
	}
	m.reasons[reason] = true
	return reason
}

// CacheHit and CacheMiss count verified-token cache look-ups.
func (m *Metrics) CacheHit()  { m.cacheHits.Inc() }
func (m *Metrics) CacheMiss() { m.cacheMisses.Inc() }

// JWKSFetch counts one fetch of a JWKS URL; err is nil on success.
func (m *Metrics) JWKSFetch(url string, err error) {
	m.jwksFetches.WithLabelValues(url).Inc()
	if err != nil {
		m.jwksFailures.WithLabelValues(url).Inc()
	}
}

// PolicyReload counts one policy load attempt and, on success, records the
// serving revision.
func (m *Metrics) PolicyReload(revision string, err error) {
	if err != nil {
		m.policyReloads.WithLabelValues(ResultRefused).Inc()
		return
	}
	m.policyReloads.WithLabelValues(ResultOK).Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	if revision == m.revision {
		return
	}
	if m.revision != "" {
		m.policyInfo.DeleteLabelValues(m.revision)
	}
	m.revision = revision
	m.policyInfo.WithLabelValues(revision).Set(1)
}

// ConfigReload counts one config reload attempt; err is nil on success.
func (m *Metrics) ConfigReload(err error) {
	if err != nil {
		m.configReloads.WithLabelValues(ResultRefused).Inc()
		return
	}
	m.configReloads.WithLabelValues(ResultOK).Inc()
}

// Minted counts one mint request on an issuer route: outcome is ResultOK
// or the issuer's stable code for why it was refused (signature_invalid,
// rate_limited, …). Routes and outcomes must be a fixed, small set: they
// are labels.
func (m *Metrics) Minted(route, outcome string) {
	m.mints.WithLabelValues(route, outcome).Inc()
}

// ShadowDecided counts one check the shadow policy decided too. live and
// shadow are reasons already mapped to a finite set by the check; the
// reason labels' bound (MaxReasons) holds here too.
func (m *Metrics) ShadowDecided(live, shadow string) {
	m.shadowDecisions.WithLabelValues(m.reasonLabel(live), m.reasonLabel(shadow)).Inc()
}

// ShadowDropped counts one sampled check the shadow's queue could not take.
func (m *Metrics) ShadowDropped() { m.shadowDropped.Inc() }

// ShadowReload counts one shadow policy load attempt; err is nil on success.
func (m *Metrics) ShadowReload(err error) {
	if err != nil {
		m.shadowReloads.WithLabelValues(ResultRefused).Inc()
		return
	}
	m.shadowReloads.WithLabelValues(ResultOK).Inc()
}

// OPALogSent counts events the OPA decision-log endpoint accepted.
func (m *Metrics) OPALogSent(events int) { m.opaLogSent.Add(float64(events)) }

// OPALogDropped counts events never sent, by why: the sender's fixed few
// reasons.
func (m *Metrics) OPALogDropped(reason string, events int) {
	m.opaLogDropped.WithLabelValues(reason).Add(float64(events))
}

// OPALogUploadFailed counts one failed, retried upload.
func (m *Metrics) OPALogUploadFailed() { m.opaLogFailures.Inc() }
