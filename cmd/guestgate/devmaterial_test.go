package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/guestgate/guestgate/internal/testsupport"
)

// TestValidateRefusesPublishedDevelopmentCredentialsOutsideDevelopment:
// validate builds what serve builds (package wiring, whose tests hold the
// refusal of every published key and secret), so a config that is not the
// development setup but names a committed development credential fails
// validation, naming the config key and file and never the secret; with
// fresh credentials it passes.
func TestValidateRefusesPublishedDevelopmentCredentialsOutsideDevelopment(t *testing.T) {
	dir, cfgPath := testsupport.CopyDevelopment(t, map[string]string{"development: true": "development: false"})
	const file, key = "secrets/guest-dev.b64", "tokens.issuers[1].secret_file"
	var out, errOut strings.Builder
	if code := run([]string{"validate", "--config", cfgPath}, nil, &out, &errOut); code != 0 {
		t.Fatalf("fresh credentials refused: %s", errOut.String())
	}
	published, err := os.ReadFile(filepath.Join("..", "..", "testdata", "dev", file))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "dev", file), string(published))
	out.Reset()
	errOut.Reset()
	if code := run([]string{"validate", "--config", cfgPath}, nil, &out, &errOut); code == 0 {
		t.Fatal("validate accepted a published development credential outside the development setup")
	}
	msg := errOut.String()
	if !strings.Contains(msg, key) || !strings.Contains(msg, file) {
		t.Errorf("error %q does not name %s and %s", msg, key, file)
	}
	if strings.Contains(msg, strings.TrimSpace(string(published))) {
		t.Errorf("error holds the secret: %s", msg)
	}
}
