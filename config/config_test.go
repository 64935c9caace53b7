package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func parse(t *testing.T, doc string) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "guest.b64"), []byte("WI2+t/87XWLI5d3MBQ7Md2/2bQParLnpLtcu6mu1xh0=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return Parse([]byte(doc), dir)
}

func TestEmptyConfigIsAWorkingDefault(t *testing.T) {
	c, err := parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.GRPC != DefaultGRPC || c.Listen.HTTP != DefaultHTTP || c.Listen.Admin != DefaultAdmin {
		t.Errorf("listeners = %+v", c.Listen)
	}
	if c.Policy.Query != DefaultQuery || !strings.HasSuffix(c.Policy.Dir, "policies") {
		t.Errorf("policy = %+v", c.Policy)
	}
	if len(c.Check.Credentials) != 1 || c.Check.Credentials[0].Header != "authorization" || c.Check.Credentials[0].Scheme != "Bearer" {
		t.Errorf("credentials = %+v", c.Check.Credentials)
	}
	if *c.Check.PreciseReasons {
		t.Error("precise reasons on outside the development setup")
	}
	if c.Tokens.Leeway.D() != time.Minute || c.Tokens.MaxSize != 8192 {
		t.Errorf("tokens = %+v", c.Tokens)
	}
	// The gRPC bound takes what Envoy sends with its defaults (60 KiB of
	// headers, twice with the path), this body bound and a token 128
	// times the token bound, so each is answered with a CheckResponse.
	if room := c.Listen.MaxMessageBytes - c.Check.MaxBodyBytes - 2*60<<10; room < 1<<20 || c.Tokens.MaxSize*128 > 1<<20 {
		t.Errorf("listen.max_message_bytes %d leaves %d beside the body; tokens.max_size %d", c.Listen.MaxMessageBytes, room, c.Tokens.MaxSize)
	}
}

func TestBadConfigErrorsNameTheKey(t *testing.T) {
	cases := []struct{ name, doc, key string }{
		{"unknown key", "listen:\n  grcp: 127.0.0.1:1\n", "grcp"},
		{"bad address", "listen:\n  grpc: nowhere\n", "listen.grpc"},
		{"bad duration", "tokens:\n  leeway: soon\n", "soon"},
		{"leeway too long", "tokens:\n  leeway: 61s\n", "tokens.leeway"},
		{"unknown kind", "tokens:\n  issuers:\n    - {name: a, kind: magic, issuer: x}\n", "tokens.issuers[0].kind"},
		{"duplicate iss", "tokens:\n  issuers:\n    - {name: a, kind: xbs_anonymous, issuer: x, audiences: [c], jwks: '{}'}\n    - {name: b, kind: xbs_anonymous, issuer: x, audiences: [c], jwks: '{}'}\n", "tokens.issuers[1].issuer"},
		{"guest without secret", "tokens:\n  issuers:\n    - {name: a, kind: guest, issuer: x}\n", "tokens.issuers[0].secret_file"},
		{"guest secret unreadable", "tokens:\n  issuers:\n    - {name: a, kind: guest, issuer: x, secret_file: missing.b64}\n", "tokens.issuers[0].secret_file"},
		{"secret env unset", "tokens:\n  issuers:\n    - {name: a, kind: guest, issuer: x, secret_env: GUESTGATE_TEST_UNSET_SECRET}\n", "tokens.issuers[0].secret_env"},
		{"xbs without audiences", "tokens:\n  issuers:\n    - {name: a, kind: xbs_anonymous, issuer: x, jwks_url: 'https://example.invalid/jwks.json'}\n", "tokens.issuers[0].audiences"},
		{"plain http jwks", "tokens:\n  issuers:\n    - {name: a, kind: xbs_anonymous, issuer: x, audiences: [c], jwks_url: 'http://example.invalid/jwks.json'}\n", "tokens.issuers[0].jwks_url"},
		{"two key sources", "tokens:\n  issuers:\n    - {name: a, kind: xbs_anonymous, issuer: x, audiences: [c], jwks: '{}', jwks_file: k.json}\n", "tokens.issuers[0]"},
		{"regular on guest", "tokens:\n  issuers:\n    - {name: a, kind: guest, issuer: x, secret_file: guest.b64, regular: {}}\n", "tokens.issuers[0].regular"},
		{"credential with two places", "check:\n  credentials:\n    - {header: authorization, query: token}\n", "check.credentials[0]"},
		{"sample rate", "decision_log:\n  allow_sample_rate: 2\n", "decision_log.allow_sample_rate"},
		{"decision cache size", "policy:\n  decision_cache: -2\n", "policy.decision_cache"},
		{"memory limit below the floor", "runtime:\n  memory_limit_mib: 8\n", "runtime.memory_limit_mib"},
		{"memory limit negative", "runtime:\n  memory_limit_mib: -2\n", "runtime.memory_limit_mib"},
		{"minting without keys", "minting:\n  access: {issuer: a, audience: b}\n", "minting.access.key_files"},
		{"development off loopback", "development: true\nlisten:\n  http: 0.0.0.0:8181\n", "listen.http"},
		{"message bound below the room for headers", "listen:\n  max_message_bytes: 65536\n", "listen.max_message_bytes"},
		{"body bound past what a message holds", "check:\n  max_body_bytes: 4194304\n", "check.max_body_bytes"},
		{"token bound past Envoy's headers", "tokens:\n  max_size: 1048576\n", "tokens.max_size"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse(t, c.doc)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.key) {
				t.Fatalf("error %q does not name %q", err, c.key)
			}
		})
	}
}

func TestValidationReportsEveryProblem(t *testing.T) {
	_, err := parse(t, "listen:\n  grpc: a\n  http: b\n")
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v is not a FieldError", err)
	}
	if !strings.Contains(err.Error(), "listen.grpc") || !strings.Contains(err.Error(), "listen.http") {
		t.Fatalf("error %q does not name both keys", err)
	}
}

func TestGuestSecretIsReadFromItsFileAndPathsAreRelativeToTheConfig(t *testing.T) {
	c, err := parse(t, "tokens:\n  issuers:\n    - {name: a, kind: guest, issuer: x, secret_file: guest.b64}\n")
	if err != nil {
		t.Fatal(err)
	}
	ti := c.Tokens.Issuers[0]
	if ti.Secret != "WI2+t/87XWLI5d3MBQ7Md2/2bQParLnpLtcu6mu1xh0=" {
		t.Fatalf("secret not read (or not trimmed)")
	}
	if !filepath.IsAbs(ti.SecretFile) {
		t.Fatalf("secret_file %q not resolved against the config's directory", ti.SecretFile)
	}
}

func TestGuestSecretFromEnvironment(t *testing.T) {
	t.Setenv("GUESTGATE_TEST_SECRET", "q6tKS94caaVzr_MHsuU0tzg9sckMxXpgCIVziCbFmk4")
	c, err := parse(t, "tokens:\n  issuers:\n    - {name: a, kind: guest, issuer: x, secret_env: GUESTGATE_TEST_SECRET}\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Tokens.Issuers[0].Secret == "" {
		t.Fatal("secret not read from the environment")
	}
}

func TestDevelopmentSetupLoadsAndIsMarked(t *testing.T) {
	t.Chdir("..")
	c, err := Development()
	if err != nil {
		t.Fatal(err)
	}
	if !c.Development || !*c.Check.PreciseReasons {
		t.Fatalf("development setup not marked: %+v", c)
	}
	for _, a := range []string{c.Listen.GRPC, c.Listen.HTTP, c.Listen.Admin} {
		if !strings.HasPrefix(a, "127.0.0.1:") {
			t.Errorf("development listener %s is not loopback", a)
		}
	}
}

func TestOversizeConfigIsRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(p, []byte("#"+strings.Repeat("x", MaxFileSize)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Load = %v", err)
	}
}

// TestPolicyEvaluatorIsPlanOrOPA: policy.evaluator takes plan or opa, and
// anything else is refused, naming the key.
func TestPolicyEvaluatorIsPlanOrOPA(t *testing.T) {
	for _, tc := range []struct {
		value string
		ok    bool
	}{{"", true}, {"plan", true}, {"opa", true}, {"wasm", false}, {"Plan", false}} {
		_, err := Parse([]byte("policy:\n  evaluator: \""+tc.value+"\"\n"), t.TempDir())
		refused := err != nil && strings.Contains(err.Error(), "policy.evaluator")
		if refused == tc.ok {
			t.Errorf("policy.evaluator %q: Validate() = %v", tc.value, err)
		}
	}
}
