package main

import (
	"log/slog"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/engine"
	"github.com/guestgate/guestgate/metrics"
)

// policySource fills opts with where the policy comes from: a bundle
// server when cfg configures one (OPA's services and bundles), else the
// policy directory, and the revision bounds either way.
func policySource(opts *engine.Options, cfg *config.Config, m *metrics.Metrics, logger *slog.Logger) error {
	opts.Limits = engine.Limits{Data: cfg.Policy.MaxDataBytes, Revision: cfg.Policy.MaxRevisionBytes}
	if !cfg.OPABundles.Enabled() {
		opts.Dir = cfg.Policy.Dir
		return nil
	}
	src, err := cfg.OPABundles.Source(engine.OPALogger(logger.With("component", "bundle")), cfg.Policy.MaxRevisionBytes)
	if err != nil {
		return err
	}
	bm := metrics.NewBundleMetrics(m.Registry(), src.Name)
	opts.Bundle = &engine.BundleOptions{
		Name: src.Name, Client: src.Client, Resource: src.Resource, Download: src.Download,
		Verification: src.Verification, PersistDir: src.PersistDir,
		OnDownload: func(result string, _ error) { bm.Download(result) },
	}
	return nil
}
