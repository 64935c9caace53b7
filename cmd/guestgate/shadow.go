package main

import (
	"fmt"
	"log/slog"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/engine"
	"github.com/guestgate/guestgate/ext_authz"
	"github.com/guestgate/guestgate/metrics"
)

// newShadow loads the shadow policy (policy.shadow.dir) as the live one is
// loaded, with the live one's query and cache settings, and installs it in
// checker; nil, nil without one. A shadow that does not load refuses the
// start, as the live policy does: it was asked for.
func newShadow(cfg *config.Config, checker *ext_authz.Checker, m *metrics.Metrics, logger *slog.Logger) (*engine.Engine, error) {
	sh := cfg.Policy.Shadow
	if !sh.Enabled() {
		return nil, nil
	}
	eng, err := engine.New(engine.Options{
		Dir:               sh.Dir,
		Query:             cfg.Policy.Query,
		Debounce:          cfg.Policy.Debounce.D(),
		DecisionCacheSize: cfg.Policy.DecisionCache,
		Evaluator:         cfg.Policy.Evaluator,
		Logger:            logger.With("policy", "shadow"),
		OnReload:          func(ev engine.ReloadEvent) { m.ShadowReload(ev.Err) },
	})
	if err != nil {
		return nil, fmt.Errorf("policy.shadow.dir %s: %w", sh.Dir, err)
	}
	checker.SetShadow(ext_authz.ShadowOptions{Engine: eng, Sample: sh.SampleRate(), Queue: sh.Queue, Observer: m})
	logger.Info("shadow policy loaded: it decides beside the live one and never answers", "dir", sh.Dir,
		"revision", eng.Revision(), "sample", sh.SampleRate())
	return eng, nil
}
