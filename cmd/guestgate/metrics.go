package main

import (
	"github.com/guestgate/guestgate/ext_authz"
	"github.com/guestgate/guestgate/metrics"
	"github.com/guestgate/guestgate/tokens"
)

// checkMetrics counts every decision: it is the check's ext_authz.Observer.
type checkMetrics struct{ m *metrics.Metrics }

func (o checkMetrics) Decided(d *ext_authz.Decision) {
	o.m.Check(d.Allowed, d.Reason, d.Kind, d.Latency)
	if d.Ownership != nil {
		o.m.Ownership(d.Ownership.Need, d.OwnershipOutcome)
	}
}

// tokenHooks counts the verifier's cache look-ups and JWKS fetches.
func tokenHooks(m *metrics.Metrics) tokens.Hooks {
	return tokens.Hooks{OnCacheHit: m.CacheHit, OnCacheMiss: m.CacheMiss, OnJWKSFetch: m.JWKSFetch}
}
