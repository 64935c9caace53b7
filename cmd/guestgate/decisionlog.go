package main

import (
	"log/slog"

	"github.com/google/uuid"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/decisionlog"
	"github.com/guestgate/guestgate/metrics"
)

// newOPALog builds the sender of decision_log.opa; nil, nil when it is
// not configured. It labels every event as OPA does: an id for this
// process and the version.
func newOPALog(cfg *config.Config, m *metrics.Metrics, logger *slog.Logger) (*decisionlog.Sender, error) {
	o := cfg.DecisionLog.OPA
	if o == nil {
		return nil, nil
	}
	return decisionlog.New(decisionlog.Options{
		URL:           o.URL,
		BatchSize:     o.BatchSize,
		BatchInterval: o.BatchInterval.D(),
		Buffer:        o.Buffer,
		Gzip:          o.GzipOn(),
		Timeout:       o.Timeout.D(),
		MaxRetryDelay: o.MaxRetryDelay.D(),
		BearerToken:   o.BearerToken,
		Labels:        map[string]string{"id": uuid.NewString(), "version": version, "app": "guestgate"},
		Logger:        logger,
		Observer:      opaLogMetrics{m},
	})
}

// opaLogMetrics counts what becomes of the OPA decision log's events: the
// sender's decisionlog.Observer.
type opaLogMetrics struct{ m *metrics.Metrics }

func (o opaLogMetrics) Sent(n int)                   { o.m.OPALogSent(n) }
func (o opaLogMetrics) Dropped(reason string, n int) { o.m.OPALogDropped(reason, n) }
func (o opaLogMetrics) UploadFailed()                { o.m.OPALogUploadFailed() }
