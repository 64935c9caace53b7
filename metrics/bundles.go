package metrics

import "github.com/prometheus/client_golang/prometheus"

// Bundle download results (engine.BundleOptions.OnDownload).
const (
	BundleOK          = "ok"
	BundleNotModified = "not_modified"
	BundleFailed      = "failed"
)

// BundleMetrics count a bundle's downloads; the revision that serves is
// guestgate_policy_revision_info's, and a refused bundle is a refused
// reload (guestgate_policy_reloads_total).
type BundleMetrics struct {
	downloads *prometheus.CounterVec
	bundle    string
}

// NewBundleMetrics registers the bundle metrics of bundle in reg (the
// Metrics' Registry).
func NewBundleMetrics(reg *prometheus.Registry, bundle string) *BundleMetrics {
	b := &BundleMetrics{bundle: bundle, downloads: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "guestgate_bundle_downloads_total",
		Help: "Bundle download attempts, by bundle and result: ok (a bundle arrived; a refused one is a refused policy reload too), not_modified (a 304: no reload) or failed (the server did not answer, or answered an error).",
	}, []string{"bundle", "result"})}
	for _, r := range []string{BundleOK, BundleNotModified, BundleFailed} {
		b.downloads.WithLabelValues(bundle, r)
	}
	reg.MustRegister(b.downloads)
	return b
}

// Download counts one download attempt.
func (b *BundleMetrics) Download(result string) { b.downloads.WithLabelValues(b.bundle, result).Inc() }
