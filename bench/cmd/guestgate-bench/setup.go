package main

// The served copy of the policy and the config the load test runs.

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// defaultMemLimitMiB is the soft memory limit the benchmark's guestgate
// runs with: what serve derives from a container memory limit of about 110
// MiB (90% of it), since a sidecar runs in a container; without one the
// session workload's heap grows to three times its live heap (GOGC=200).
// The load rows stay far below it.
const defaultMemLimitMiB = 100

// markerWidget is a widget only the reload test's prober uses: toggling its
// anonymous sessions flips the prober's answer and no other.
const markerWidget = "W-BENCH-MARKER"

// writeSetup copies the shipped policy to dir (with the marker widget
// added to its registry) and writes a config that serves it on loopback
// port 0 with the development keys (so as the development setup: guestgate
// refuses published keys in any other), but with the decision log as it
// ships (allows sampled, denials all) and coarse reasons, as a deployment
// runs. pprof turns on the admin listener's profiles (-profile); memLimitMiB,
// when not 0, is its runtime.memory_limit_mib.
func writeSetup(repo, dir string, pprof bool, memLimitMiB int) (cfgPath, widgetsPath string, err error) {
	src := filepath.Join(repo, "policies")
	dst := filepath.Join(dir, "policies")
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if strings.HasSuffix(p, "_test.rego") || strings.HasSuffix(p, ".md") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		return "", "", err
	}
	widgetsPath = filepath.Join(dst, "registry", "widgets.json")
	if err := setMarker(widgetsPath, true); err != nil {
		return "", "", err
	}
	dev := filepath.Join(repo, "testdata", "dev")
	cfg := fmt.Sprintf(`development: true
check:
  precise_reasons: false
listen:
  grpc: 127.0.0.1:0
  http: 127.0.0.1:0
  admin: 127.0.0.1:0
policy:
  dir: %[1]s
tokens:
  issuers:
    - name: dev-anonymous
      kind: xbs_anonymous
      issuer: https://cognito-idp.dev.guestgate.invalid/dev-pool
      audiences: [dev-widget-client]
      regular:
        authorization_types: []
    - name: dev-partner
      kind: guest
      issuer: dev-guest-issuer
      secret_file: %[2]s/secrets/guest-dev.b64
    - name: dev-sat
      kind: secure_anonymous
      issuer: https://guestgate.dev.invalid/sat
    - name: dev-access
      kind: access
      issuer: https://guestgate.dev.invalid/access
minting:
  anonymous_email_domain: dev.guestgate.invalid
  xbs_anonymous:
    issuer: https://cognito-idp.dev.guestgate.invalid/dev-pool
    audience: dev-widget-client
    key_files: [%[2]s/keys/xbs-dev-1.pem]
  secure_anonymous:
    issuer: https://guestgate.dev.invalid/sat
    audience: https://guestgate.dev.invalid/launchpads
    key_files: [%[2]s/keys/sat-dev-1.pem, %[2]s/keys/sat-dev-0.pem]
  access:
    issuer: https://guestgate.dev.invalid/access
    audience: https://guestgate.dev.invalid/api
    key_files: [%[2]s/keys/access-dev-1.pem]
`, dst, dev)
	if pprof {
		cfg += "admin:\n  pprof: true\n"
	}
	if memLimitMiB != 0 {
		cfg += fmt.Sprintf("runtime:\n  memory_limit_mib: %d\n", memLimitMiB)
	}
	cfgPath = filepath.Join(dir, "guestgate.yaml")
	return cfgPath, widgetsPath, os.WriteFile(cfgPath, []byte(cfg), 0o644)
}

// setMarker rewrites the widgets file with the marker widget's anonymous
// sessions on or off, atomically (a dot-named temporary file, which the
// engine ignores, renamed over it), as a deployment tool would.
func setMarker(path string, on bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if doc["widgets"] == nil {
		return fmt.Errorf("%s: no widgets", path)
	}
	doc["widgets"][markerWidget] = map[string]any{"anonymous_sessions": on, "channels": []string{}}
	b, err = json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), ".widgets.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
