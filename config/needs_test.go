package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNeedsSaysWhyEachOneCannotBeUsed(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "present.b64"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GG_NEEDS_SET", "value")
	t.Setenv("GG_NEEDS_BLANK", "  ")
	doc := `policy:
  dir: present.b64
tokens:
  issuers:
    - {name: a, kind: guest, issuer: a, secret_file: present.b64}
    - {name: b, kind: guest, issuer: b, secret_env: GG_NEEDS_SET}
    - {name: c, kind: guest, issuer: c, secret_env: GG_NEEDS_BLANK}
    - {name: d, kind: guest, issuer: d, secret_env: GG_NEEDS_NEVER_SET}
    - {name: e, kind: xbs_anonymous, issuer: e, audiences: [x], jwks_file: missing.json}
minting:
  access: {issuer: i, audience: a, key_files: [keys]}
`
	path := filepath.Join(dir, "guestgate.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	needs, err := Needs(path)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, n := range needs {
		got[n.Key] = n.Kind + " " + n.Name + ": " + n.Problem
	}
	want := map[string]string{
		"policy.dir":                    "directory " + filepath.Join(dir, "present.b64") + ": not a directory",
		"tokens.issuers[0].secret_file": "file " + filepath.Join(dir, "present.b64") + ": ",
		"tokens.issuers[1].secret_env":  "environment variable GG_NEEDS_SET: ",
		"tokens.issuers[2].secret_env":  "environment variable GG_NEEDS_BLANK: empty",
		"tokens.issuers[3].secret_env":  "environment variable GG_NEEDS_NEVER_SET: not set",
		"tokens.issuers[4].jwks_file":   "file " + filepath.Join(dir, "missing.json") + ": no such file or directory",
		"minting.access.key_files[0]":   "file " + filepath.Join(dir, "keys") + ": a directory, not a file",
	}
	if len(got) != len(want) {
		t.Errorf("needs %v, want %d of them", got, len(want))
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %q, want %q", k, got[k], w)
		}
	}

	err = CheckNeeds(path)
	var me *MissingError
	if !errors.As(err, &me) || len(me.Missing) != 5 {
		t.Fatalf("CheckNeeds = %v, want the five missing", err)
	}
	if strings.Contains(err.Error(), "value") {
		t.Fatalf("the error holds a variable's value: %v", err)
	}
}

func TestNeedsOfADocumentThatDoesNotDecodeIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "guestgate.yaml")
	if err := os.WriteFile(path, []byte("listen:\n  grcp: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var me *MissingError
	if err := CheckNeeds(path); err == nil || errors.As(err, &me) || !strings.Contains(err.Error(), "grcp") {
		t.Fatalf("CheckNeeds = %v, want the decode error naming the key", err)
	}
}
