package main

import (
	"path/filepath"
	"testing"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
)

// bundleConfig points cfg at the bundle at path on srv, signed with key,
// long polling, persisted under persist: OPA's own config shape.
func bundleConfig(cfg *config.Config, srv *testsupport.BundleServer, path string, key testsupport.SigningKey, persist string) {
	cfg.OPABundles = config.OPABundles{
		Services: map[string]any{"bundles": map[string]any{"url": srv.URL}},
		Bundles: map[string]any{"authz": map[string]any{
			"service": "bundles", "resource": path, "persist": true,
			"signing": map[string]any{"keyid": "ci"},
			"polling": map[string]any{"min_delay_seconds": 1, "max_delay_seconds": 2, "long_polling_timeout_seconds": 30},
		}},
		Keys:                 map[string]any{"ci": map[string]any{"key": key.Public, "algorithm": "ES256"}},
		PersistenceDirectory: persist,
	}
}

func TestServeTakesThePolicyFromASignedBundleAndNamesItsRevision(t *testing.T) {
	cfg := devConfig(t)
	policy := testsupport.DirFiles(t, filepath.Join(testsupport.RepoRoot(t), "policies"))
	key := testsupport.NewSigningKey(t)
	srv := testsupport.StartBundleServer(t, true)
	const path = "/bundles/guestgate.tar.gz"
	srv.Set(path, testsupport.BuildPolicyBundle(t, policy, "rev-1", &key))
	bundleConfig(cfg, srv, path, key, t.TempDir())
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s := startSidecar(t, cfg, nil)

	revision := func() (bool, string) {
		_, rd := readyz(t, s)
		if rd.Policy.Bundle == nil {
			return false, "no bundle in /readyz"
		}
		return true, rd.Policy.Revision + " " + rd.Policy.Bundle.Revision + " " + rd.Policy.LastError
	}
	if _, got := revision(); got != "rev-1 rev-1 " {
		t.Fatalf("/readyz policy = %q, want rev-1 serving", got)
	}
	// The bundle carries the shipped policies' data, not only their Rego.
	if _, ok := s.engine.Data("registry", "widgets"); !ok {
		t.Fatal("the bundle's revision has no data.registry.widgets: the policies' data was left out of the bundle")
	}

	// A new bundle arrives by long polling, well within the poll bound.
	policy["extra/data.json"] = `{"note": "rev-2"}`
	srv.Set(path, testsupport.BuildPolicyBundle(t, policy, "rev-2", &key))
	testsupport.EventuallyState(t, "rev-2 serving", func() (bool, string) {
		_, got := revision()
		return got == "rev-2 rev-2 ", got
	})
	exp := testsupport.Scrape(t, metricsURL(s))
	if v := testsupport.Metric(t, exp, `guestgate_policy_revision_info{revision="rev-2"}`); v != 1 {
		t.Errorf("guestgate_policy_revision_info{revision=rev-2} = %v, want 1", v)
	}
	if v := testsupport.Metric(t, exp, `guestgate_bundle_downloads_total{bundle="authz",result="ok"}`); v < 2 {
		t.Errorf("bundle downloads ok = %v, want at least 2", v)
	}

	// A tampered bundle is refused; rev-2 keeps serving.
	srv.Set(path, testsupport.TamperBundle(t, testsupport.BuildPolicyBundle(t, policy, "rev-3", &key), "data.json", `{}`))
	testsupport.EventuallyState(t, "the tampered bundle refused", func() (bool, string) {
		_, rd := readyz(t, s)
		return rd.Policy.Revision == "rev-2" && rd.Policy.LastError != "", rd.Policy.Revision + " " + rd.Policy.LastError
	})
}
