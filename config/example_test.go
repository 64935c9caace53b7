package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExampleConfigIsValid keeps the documented production example loading:
// with its secrets in the environment it validates, and it is not the
// development setup.
func TestExampleConfigIsValid(t *testing.T) {
	t.Setenv("GUESTGATE_ACME_GUEST_SECRET", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0=")
	t.Setenv("GUESTGATE_ACME_BACKEND_SECRET", strings.Repeat("s", 40))
	c, err := Load("guestgate.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Development || *c.Check.PreciseReasons {
		t.Fatal("the example must run with coarse reasons, outside the development setup")
	}
	if len(c.Tokens.Issuers) != 5 || !c.Issuer.Enabled {
		t.Fatalf("issuers %d, issuer enabled %v", len(c.Tokens.Issuers), c.Issuer.Enabled)
	}
}

// TestExampleConfigNeedsItsSecrets: without the environment it names, the
// example is refused, naming the key.
func TestExampleConfigNeedsItsSecrets(t *testing.T) {
	doc, err := os.ReadFile("guestgate.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(doc, filepath.Dir("guestgate.example.yaml"))
	if err == nil || !strings.Contains(err.Error(), "secret_env") {
		t.Fatalf("error %v, want one naming secret_env", err)
	}
}
