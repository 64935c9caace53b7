package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOPADecisionLogIsOffByDefaultAndDefaultsWhenOn(t *testing.T) {
	c, err := parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.DecisionLog.OPA != nil {
		t.Fatal("OPA decision logs on in an empty config")
	}
	c, err = parse(t, "decision_log:\n  opa:\n    url: https://logs.example/logs\n")
	if err != nil {
		t.Fatal(err)
	}
	o := c.DecisionLog.OPA
	if o.BatchSize != DefaultOPALogBatchSize || o.Buffer != DefaultOPALogBuffer || o.BatchInterval.D() != DefaultOPALogBatchInterval ||
		!o.GzipOn() || o.Timeout.D() != DefaultOPALogTimeout || o.MaxRetryDelay.D() != DefaultOPALogMaxRetryDelay || o.BearerToken != "" {
		t.Fatalf("defaults: %+v", o)
	}
}

func TestOPADecisionLogReadsItsBearerTokenFromAFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "logs.token"), []byte("s3cr3t-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte("decision_log:\n  opa:\n    url: http://127.0.0.1:9/logs\n    bearer_token_file: logs.token\n    gzip: false\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.DecisionLog.OPA.BearerToken != "s3cr3t-token" || c.DecisionLog.OPA.GzipOn() {
		t.Fatalf("%+v", c.DecisionLog.OPA)
	}
}

func TestBadOPADecisionLogConfigNamesTheKey(t *testing.T) {
	cases := []struct{ name, doc, key string }{
		{"no url", "decision_log:\n  opa: {batch_size: 10}\n", "decision_log.opa.url"},
		{"plain http off loopback", "decision_log:\n  opa: {url: 'http://logs.example/logs'}\n", "decision_log.opa.url"},
		{"user info", "decision_log:\n  opa: {url: 'https://u:p@logs.example/logs'}\n", "decision_log.opa.url"},
		{"batch too large", "decision_log:\n  opa: {url: 'https://logs.example', batch_size: 20000}\n", "decision_log.opa.batch_size"},
		{"interval too short", "decision_log:\n  opa: {url: 'https://logs.example', batch_interval: 1ms}\n", "decision_log.opa.batch_interval"},
		{"negative buffer", "decision_log:\n  opa: {url: 'https://logs.example', buffer: -1}\n", "decision_log.opa.buffer"},
		{"retry delay too short", "decision_log:\n  opa: {url: 'https://logs.example', max_retry_delay: 10ms}\n", "decision_log.opa.max_retry_delay"},
		{"token in two places", "decision_log:\n  opa: {url: 'https://logs.example', bearer_token_file: a, bearer_token_env: B}\n", "decision_log.opa.bearer_token_file"},
		{"token env unset", "decision_log:\n  opa: {url: 'https://logs.example', bearer_token_env: GUESTGATE_TEST_UNSET_LOG_TOKEN}\n", "decision_log.opa.bearer_token_env"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse(t, c.doc)
			if err == nil || !strings.Contains(err.Error(), c.key) {
				t.Fatalf("error %v, want one naming %s", err, c.key)
			}
		})
	}
}
