package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/tokens"
)

// tempSetup copies the development setup and the shipped policies into a
// scratch directory (testsupport.CopyDevelopment), so a test can break
// and mend them while guestgate watches. It returns the config file's path and content. The
// development setup serves the nginx form of the HTTP check (nginxCheck).
func tempSetup(t *testing.T) (string, string) {
	t.Helper()
	_, path := testsupport.CopyDevelopment(t, nil)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, string(b)
}

// readiness reads /readyz whatever its status.
func readyz(t *testing.T, s *sidecar) (int, readiness) {
	t.Helper()
	resp, err := http.Get("http://" + s.adminLis.Addr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rd readiness
	if err := json.NewDecoder(resp.Body).Decode(&rd); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, rd
}

// nginxCheck asks the HTTP check (nginx form) as nginx would, from loopback.
func nginxCheck(t *testing.T, s *sidecar, method, uri, authorization string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+s.httpLis.Addr().String()+config.DefaultHTTPCheckPrefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Original-Method", method)
	req.Header.Set("X-Original-URI", uri)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// logLine is one JSON log line.
type logLine struct {
	Level string `json:"level"`
	Msg   string `json:"msg"`
}

func logged(logs string, level, msgPrefix string) bool {
	for _, l := range strings.Split(logs, "\n") {
		var ll logLine
		if json.Unmarshal([]byte(l), &ll) == nil && ll.Level == level && strings.HasPrefix(ll.Msg, msgPrefix) {
			return true
		}
	}
	return false
}

func TestMetricsMoveForChecksAndReloadsAndReadyzShowsRefusals(t *testing.T) {
	path, doc := tempSetup(t)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testsupport.LogBuffer{}
	s := startSidecar(t, cfg, logs)
	rev := s.engine.Revision()

	m := testsupport.Scrape(t, metricsURL(s))
	for sample, want := range map[string]float64{
		`guestgate_policy_reloads_total{result="ok"}`:            1,
		`guestgate_policy_reloads_total{result="refused"}`:       0,
		`guestgate_policy_revision_info{revision="` + rev + `"}`: 1,
		`guestgate_config_reloads_total{result="refused"}`:       0,
	} {
		if got := testsupport.Metric(t, m, sample); got != want {
			t.Errorf("at start: %s = %v, want %v", sample, got, want)
		}
	}

	// Checks: an allow (a miss, then a hit, in the token cache) and a deny.
	kite, err := signerOf(t, s).MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryKite, WidgetID: "W-DEMO", ChannelID: "support-1"})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got := nginxCheck(t, s, "POST", "/conversations/GetTokenCommand", "Bearer "+kite.Token); got != 200 {
			t.Fatalf("allow: %d", got)
		}
	}
	if got := nginxCheck(t, s, "POST", "/calendar/events", ""); got != 401 {
		t.Fatalf("deny: %d", got)
	}
	m = testsupport.Scrape(t, metricsURL(s))
	for sample, want := range map[string]float64{
		`guestgate_checks_total{decision="allow",kind="xbs_anonymous",reason="allowed"}`: 2,
		`guestgate_checks_total{decision="deny",kind="none",reason="missing_token"}`:     1,
		`guestgate_check_duration_seconds_count{decision="allow"}`:                       2,
		`guestgate_check_duration_seconds_count{decision="deny"}`:                        1,
		`guestgate_token_cache_misses_total`:                                             1,
		`guestgate_token_cache_hits_total`:                                               1,
	} {
		if got := testsupport.Metric(t, m, sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}

	// A policy change that does not compile is refused: readiness shows it,
	// the refusal is counted and logged at error, the revision stays.
	polDir := s.cfg.Load().Policy.Dir
	broken := filepath.Join(polDir, "broken.rego")
	if err := os.WriteFile(broken, []byte("package guestgate.broken\n\nx := {\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, "/readyz shows the refused policy", func() bool {
		_, rd := readyz(t, s)
		return strings.Contains(rd.Policy.LastError, "broken.rego")
	})
	code, rd := readyz(t, s)
	if code != http.StatusOK || rd.Policy.Revision != rev {
		t.Fatalf("after a refused policy: %d %+v (the last good revision must keep serving)", code, rd.Policy)
	}
	m = testsupport.Scrape(t, metricsURL(s))
	if got := testsupport.Metric(t, m, `guestgate_policy_reloads_total{result="refused"}`); got < 1 {
		t.Errorf("refused policy reload not counted")
	}
	if !logged(logs.String(), "ERROR", "policy reload refused") {
		t.Errorf("refused policy reload not logged at error:\n%s", logs)
	}

	// Mended with a change: a new revision serves and is the one exported.
	okBefore := testsupport.Metric(t, m, `guestgate_policy_reloads_total{result="ok"}`)
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(polDir, "extra.rego"), []byte("package guestgate.extra\n\nx := 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The removal and the write may be two reloads: wait until the
	// revision serving is the one /readyz and the metrics export.
	var newRev string
	testsupport.Eventually(t, "a new revision serves and is exported", func() bool {
		_, rd := readyz(t, s)
		m = testsupport.Scrape(t, metricsURL(s))
		newRev = s.engine.Revision()
		return rd.Policy.Revision != rev && rd.Policy.LastError == "" && rd.Policy.Revision == newRev &&
			strings.Contains(m, `guestgate_policy_revision_info{revision="`+newRev+`"}`) &&
			s.engine.Revision() == newRev
	})
	if testsupport.Metric(t, m, `guestgate_policy_reloads_total{result="ok"}`) <= okBefore ||
		testsupport.Metric(t, m, `guestgate_policy_revision_info{revision="`+newRev+`"}`) != 1 ||
		strings.Contains(m, `revision="`+rev+`"`) {
		t.Errorf("after the reload to %s:\n%s", newRev, grep(m, "guestgate_policy"))
	}

	// A bad config is refused the same way.
	if err := os.WriteFile(path, []byte(doc+"check:\n  max_body_bytes: -1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, "/readyz shows the refused config", func() bool {
		_, rd := readyz(t, s)
		return strings.Contains(rd.Config.LastError, "check.max_body_bytes")
	})
	if code, _ := readyz(t, s); code != http.StatusOK {
		t.Fatalf("a refused config made guestgate unready (%d): the last good config serves", code)
	}
	if got := testsupport.Metric(t, testsupport.Scrape(t, metricsURL(s)), `guestgate_config_reloads_total{result="refused"}`); got < 1 {
		t.Error("refused config reload not counted")
	}
	if !logged(logs.String(), "ERROR", "config reload refused") {
		t.Errorf("refused config reload not logged at error:\n%s", logs)
	}
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, "the mended config reloads", func() bool {
		_, rd := readyz(t, s)
		return rd.Config.LastError == ""
	})
	if got := testsupport.Metric(t, testsupport.Scrape(t, metricsURL(s)), `guestgate_config_reloads_total{result="ok"}`); got < 1 {
		t.Error("config reload not counted")
	}
	// And checks still answer with the reloaded config.
	if got := nginxCheck(t, s, "POST", "/conversations/GetTokenCommand", "Bearer "+kite.Token); got != 200 {
		t.Fatalf("allow after the reloads: %d", got)
	}
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestValidateExitsNonZeroOnABadConfigPolicyOrKeys(t *testing.T) {
	const goodPolicy = "package guestgate.authz\n\ndecision := false\n"
	cases := []struct {
		name   string
		config string
		files  map[string]string
		names  string // what the error must name
	}{
		{"good", "policy:\n  dir: pol\n", nil, ""},
		{"unknown key", "policy:\n  dir: pol\nchek: {}\n", nil, "chek"},
		{"bad value", "policy:\n  dir: pol\ncheck:\n  max_body_bytes: -1\n", nil, "check.max_body_bytes"},
		{"bad http check", "policy:\n  dir: pol\nhttp_check:\n  form: guess\n", nil, "http_check.form"},
		{"policy does not compile", "policy:\n  dir: pol\n", map[string]string{"pol/bad.rego": "package guestgate.authz\n\nx := {\n"}, "bad.rego"},
		{"policy directory missing", "policy:\n  dir: nowhere\n", nil, "nowhere"},
		{"signing key is not a key", "policy:\n  dir: pol\nminting:\n  xbs_anonymous: {issuer: x, audience: y, key_files: [bad.pem]}\n",
			map[string]string{"bad.pem": "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"}, "minting.xbs_anonymous.key_files[0]"},
		{"signing key missing", "policy:\n  dir: pol\nminting:\n  xbs_anonymous: {issuer: x, audience: y, key_files: [none.pem]}\n", nil, "minting.xbs_anonymous.key_files[0]"},
		{"JWKS is not a key set", "policy:\n  dir: pol\ntokens:\n  issuers:\n    - {name: a, kind: xbs_anonymous, issuer: x, audiences: [c], jwks_file: bad.json}\n",
			map[string]string{"bad.json": `{"keys": [{"kty": "RSA", "n": "AQAB"}]}`}, `issuer "a": Keys: JWKS file`},
		{"guest secret too short", "policy:\n  dir: pol\ntokens:\n  issuers:\n    - {name: a, kind: guest, issuer: x, secret_file: s.b64}\n",
			map[string]string{"s.b64": "c2hvcnQ=\n"}, `tokens.issuers[0].secret_file: guest secret`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{"pol/authz.rego": goodPolicy, "guestgate.yaml": tc.config}
			for k, v := range tc.files {
				files[k] = v
			}
			for name, content := range files {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var out, errOut bytes.Buffer
			code := run([]string{"validate", "--config", filepath.Join(dir, "guestgate.yaml")}, nil, &out, &errOut)
			if tc.names == "" {
				if code != 0 || !strings.HasPrefix(out.String(), "ok: ") {
					t.Fatalf("a good config: exit %d: %s%s", code, out.String(), errOut.String())
				}
				return
			}
			if code == 0 {
				t.Fatalf("exit 0 for a bad setup: %s", out.String())
			}
			if !strings.Contains(errOut.String(), tc.names) {
				t.Fatalf("error does not name %s: %s", tc.names, errOut.String())
			}
		})
	}
}
