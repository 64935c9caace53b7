package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/download"
	"github.com/open-policy-agent/opa/v1/plugins"
	"github.com/open-policy-agent/opa/v1/plugins/rest"

	"github.com/guestgate/guestgate/internal/testsupport"
)

const bundlePath = "/bundles/authz.tar.gz"

// bundleFiles is a bundle's source: the tagged policy and a manifest whose
// roots are guestgate and registry.
func bundleFiles(tag string, extra map[string]string) map[string]string {
	files := map[string]string{
		".manifest":            `{"roots": ["guestgate", "registry"]}`,
		"guestgate/authz.rego": taggedPolicy(tag),
		"registry/data.json":   `{"widgets": {}}`,
	}
	for k, v := range extra {
		files[k] = v
	}
	return files
}

// bundleEngine serves the bundle at bundlePath on srv, verified with key
// (nil: unsigned), triggered by hand.
func bundleEngine(t *testing.T, srv *testsupport.BundleServer, key *testsupport.SigningKey, persist string, rec *reloadRecorder) (*Engine, error) {
	t.Helper()
	client, err := rest.New([]byte(fmt.Sprintf(`{"url": %q}`, srv.URL)), nil, rest.Name("test"), rest.Logger(OPALogger(quietLogger())))
	if err != nil {
		t.Fatal(err)
	}
	var vc *bundle.VerificationConfig
	if key != nil {
		vc = bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{"k": {Key: key.Public, Algorithm: "ES256"}}, "k", "", nil)
	}
	manual := plugins.TriggerManual
	opts := Options{
		Logger: quietLogger(),
		Bundle: &BundleOptions{Name: "authz", Client: client, Resource: bundlePath, Verification: vc,
			Download: download.Config{Trigger: &manual}, PersistDir: persist},
		Limits: Limits{Data: 1 << 10, Revision: 4 << 10},
	}
	if rec != nil {
		opts.OnReload = rec.record
	}
	return New(opts)
}

func trigger(t *testing.T, e *Engine) {
	t.Helper()
	_ = e.Trigger(context.Background()) // the outcome is in Status
}

func TestBundleSignedIsServedAndANewOnePickedUp(t *testing.T) {
	srv := testsupport.StartBundleServer(t, false)
	key := testsupport.NewSigningKey(t)
	srv.Set(bundlePath, testsupport.BuildBundle(t, bundleFiles("v1", nil), "rev-1", &key))
	e, err := bundleEngine(t, srv, &key, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := reason(t, e); got != "v1" {
		t.Fatalf("reason = %q, want v1", got)
	}
	st := e.Status()
	if st.Revision != "rev-1" || st.Bundle == nil || st.Bundle.Revision != "rev-1" || st.Bundle.ETag == "" {
		t.Fatalf("status = %+v, bundle %+v; want revision rev-1 with an ETag", st, st.Bundle)
	}
	if res, _ := e.Eval(context.Background(), nil); res.Revision != "rev-1" {
		t.Errorf("Result.Revision = %q, want the bundle's rev-1", res.Revision)
	}

	srv.Set(bundlePath, testsupport.BuildBundle(t, bundleFiles("v2", nil), "rev-2", &key))
	trigger(t, e)
	if got := reason(t, e); got != "v2" {
		t.Errorf("reason = %q after the new bundle, want v2", got)
	}
	if st := e.Status(); st.Revision != "rev-2" || st.LastError != "" {
		t.Errorf("status = %+v, want rev-2 and no error", st)
	}
}

func TestBundleTamperedOrUnsignedIsRefusedAndTheLastGoodServes(t *testing.T) {
	srv := testsupport.StartBundleServer(t, false)
	key := testsupport.NewSigningKey(t)
	good := testsupport.BuildBundle(t, bundleFiles("v1", nil), "rev-1", &key)
	srv.Set(bundlePath, good)
	e, err := bundleEngine(t, srv, &key, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	other := testsupport.NewSigningKey(t)
	for name, raw := range map[string][]byte{
		"tampered":  testsupport.TamperBundle(t, good, "guestgate/authz.rego", taggedPolicy("evil")),
		"unsigned":  testsupport.BuildBundle(t, bundleFiles("unsigned", nil), "rev-u", nil),
		"other key": testsupport.BuildBundle(t, bundleFiles("other", nil), "rev-o", &other),
	} {
		srv.Set(bundlePath, raw)
		trigger(t, e)
		st := e.Status()
		if st.LastError == "" || st.Revision != "rev-1" {
			t.Errorf("%s: status = %+v, want a refusal and rev-1 serving", name, st)
		}
		if got := reason(t, e); got != "v1" {
			t.Errorf("%s: reason = %q, want v1 (the last good)", name, got)
		}
	}
	// The good bundle again clears the refusal.
	srv.Set(bundlePath, good)
	trigger(t, e)
	if st := e.Status(); st.LastError != "" {
		ok, nm := srv.Counts()
		t.Errorf("LastError = %q after the good bundle came back (%d, %d) %+v", st.LastError, ok, nm, st.Bundle)
	}
}

func TestBundleUnchangedCostsA304AndNoReload(t *testing.T) {
	srv := testsupport.StartBundleServer(t, false)
	srv.Set(bundlePath, testsupport.BuildBundle(t, bundleFiles("v1", nil), "rev-1", nil))
	rec := &reloadRecorder{}
	e, err := bundleEngine(t, srv, nil, "", rec)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		trigger(t, e)
	}
	if ok, notModified := srv.Counts(); ok != 1 || notModified != 3 {
		t.Errorf("server sent %d bundles and %d 304s, want 1 and 3", ok, notModified)
	}
	if got := rec.count(); got != 1 {
		t.Errorf("%d load attempts, want 1 (the first download)", got)
	}
}

func TestBundleRestartServesThePersistedBundleOffline(t *testing.T) {
	srv := testsupport.StartBundleServer(t, false)
	key := testsupport.NewSigningKey(t)
	persist := t.TempDir()
	srv.Set(bundlePath, testsupport.BuildBundle(t, bundleFiles("v1", nil), "rev-1", &key))
	if _, err := bundleEngine(t, srv, &key, persist, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(persist, "bundle.tar.gz")); err != nil {
		t.Fatalf("the bundle was not persisted: %v", err)
	}

	// The server is gone (404): the restart serves the persisted bundle.
	srv.Set(bundlePath, nil)
	e, err := bundleEngine(t, srv, &key, persist, nil)
	if err != nil {
		t.Fatalf("restart without the server: %v", err)
	}
	if got := reason(t, e); got != "v1" {
		t.Fatalf("reason = %q offline, want v1", got)
	}
	if st := e.Status(); !st.Bundle.FromDisk || st.Revision != "rev-1" {
		t.Errorf("status = %+v, bundle %+v; want rev-1 from disk", st, st.Bundle)
	}
	trigger(t, e)
	if st := e.Status(); st.Bundle.DownloadError == "" || st.LastError != "" {
		t.Errorf("bundle status = %+v, last error %q; want a download error and no refusal", st.Bundle, st.LastError)
	}

	// Back: the server's bundle replaces the persisted one.
	srv.Set(bundlePath, testsupport.BuildBundle(t, bundleFiles("v2", nil), "rev-2", &key))
	trigger(t, e)
	if got := reason(t, e); got != "v2" {
		t.Errorf("reason = %q once the server answered, want v2", got)
	}
	if st := e.Status(); st.Bundle.FromDisk || st.Bundle.DownloadError != "" {
		t.Errorf("bundle status = %+v, want from the server", st.Bundle)
	}

	// A tampered persisted bundle is refused at start like a downloaded
	// one: with the server down, the restart fails.
	tampered := testsupport.TamperBundle(t, mustRead(t, filepath.Join(persist, "bundle.tar.gz")), "guestgate/authz.rego", taggedPolicy("evil"))
	if err := os.WriteFile(filepath.Join(persist, "bundle.tar.gz"), tampered, 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Set(bundlePath, nil)
	if _, err := bundleEngine(t, srv, &key, persist, nil); err == nil {
		t.Error("a restart with a tampered persisted bundle and no server started")
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBundleRefusedForTheReasonsADirectoryIs(t *testing.T) {
	// opa build refuses what does not compile or breaks the roots, so
	// those are built good and then altered (unsigned: nothing else
	// notices).
	comment := func(n int) string { return "# " + strings.Repeat("c", n) + "\n" }
	alter := func(files map[string]string, name, content string) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			return testsupport.TamperBundle(t, testsupport.BuildBundle(t, files, "rev-2", nil), name, content)
		}
	}
	build := func(files map[string]string) func(t *testing.T) []byte {
		return func(t *testing.T) []byte { return testsupport.BuildBundle(t, files, "rev-2", nil) }
	}
	for _, tc := range []struct {
		name  string
		build func(t *testing.T) []byte
		want  string
	}{
		// opa build merges the data into one data.json.
		{"over the data bound", build(bundleFiles("v2", map[string]string{"registry/big/data.json": `{"blob": "` + strings.Repeat("x", 2<<10) + `"}`})),
			"data.json is 2094 bytes, over the data bound of 1024 bytes (policy.max_data_bytes)"},
		{"over the revision bound", build(bundleFiles("v2", map[string]string{
			"guestgate/a.rego": "package guestgate.a\n\n" + comment(1500),
			"guestgate/b.rego": "package guestgate.b\n\n" + comment(1500),
			"guestgate/c.rego": "package guestgate.c\n\n" + comment(1500),
		})), "over the revision bound of 4096 bytes (policy.max_revision_bytes)"},
		{"does not compile", alter(bundleFiles("v2", nil), "guestgate/authz.rego", "package guestgate.authz\n\ndecision := \n"), "authz.rego:"},
		{"loses the decision rule", build(map[string]string{".manifest": `{"roots": ["guestgate"]}`, "guestgate/other.rego": "package guestgate.other\n\nx := 1\n"}), "decision query refers to no rule"},
		{"a module outside the roots", alter(bundleFiles("v2", nil), ".manifest", `{"roots": ["registry"]}`), "manifest roots [registry] do not permit 'package guestgate.authz'"},
		{"data outside the roots", alter(bundleFiles("v2", nil), ".manifest", `{"roots": ["guestgate"]}`), "manifest roots [guestgate] do not permit data at path '/registry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testsupport.StartBundleServer(t, false)
			srv.Set(bundlePath, testsupport.BuildBundle(t, bundleFiles("v1", nil), "rev-1", nil))
			e, err := bundleEngine(t, srv, nil, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			srv.Set(bundlePath, tc.build(t))
			trigger(t, e)
			st := e.Status()
			if !strings.Contains(st.LastError, tc.want) {
				t.Errorf("LastError = %q, want it to say %q", st.LastError, tc.want)
			}
			if st.Revision != "rev-1" || reason(t, e) != "v1" {
				t.Errorf("revision %q serving, want rev-1", st.Revision)
			}
		})
	}
}

func TestBundleFirstDownloadFailingFailsNew(t *testing.T) {
	srv := testsupport.StartBundleServer(t, false)
	_, err := bundleEngine(t, srv, nil, "", nil)
	if err == nil || !strings.Contains(err.Error(), "first download") {
		t.Errorf("New = %v, want a first download error", err)
	}
}

func TestDirectoryOverTheBoundsIsRefused(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("v1")})
	e, err := New(Options{Dir: dir, Logger: quietLogger(), Limits: Limits{Data: 1 << 10, Revision: 4 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, map[string]string{"registry/big.json": `{"b": "` + strings.Repeat("b", 2000) + `"}`})
	err = e.Reload()
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "registry/big.json is 2009 bytes, over the data bound of 1024 bytes (policy.max_data_bytes)") {
		t.Errorf("Reload = %v, want the file, its size and the bound", err)
	}
	if err := os.Remove(filepath.Join(dir, "registry", "big.json")); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		writeFiles(t, dir, map[string]string{fmt.Sprintf("registry/r%d.json", i): `{"r` + fmt.Sprint(i) + `": "` + strings.Repeat("r", 1000) + `"}`})
	}
	err = e.Reload()
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "over the revision bound of 4096 bytes (policy.max_revision_bytes)") {
		t.Errorf("Reload = %v, want the revision bound", err)
	}
	if got := reason(t, e); got != "v1" {
		t.Errorf("reason = %q, want v1 (the last good)", got)
	}
}
