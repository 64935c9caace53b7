package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The binary as a newcomer tries it: a bare guestgate, a port already
// taken, the example config validated on a laptop.

func TestBareGuestgatePrintsItsUsageAndExits2(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no arguments", nil, "usage:\n  guestgate serve"},
		{"a flag without a command", []string{"--config", "x.yaml"}, "a command comes first (guestgate serve --config"},
		{"an unknown command", []string{"start"}, `unknown command "start"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(c.args, nil, &out, &errOut); code != 2 {
				t.Fatalf("exit %d, want 2 (stderr %q)", code, errOut.String())
			}
			if !strings.Contains(errOut.String(), c.want) || !strings.Contains(errOut.String(), "guestgate validate --config FILE") {
				t.Fatalf("stderr does not hold %q and the usage:\n%s", c.want, errOut.String())
			}
			if out.Len() != 0 {
				t.Fatalf("stdout %q, want nothing", out.String())
			}
		})
	}
}

// TestTakenListenAddressFailsAtOnceNamingTheListenerAndItsKey: the policy
// in this config does not compile, so an error about the listener proves
// the address was tried before anything was built.
func TestTakenListenAddressFailsAtOnceNamingTheListenerAndItsKey(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	for _, c := range []struct {
		key, name string
	}{
		{"grpc", "the gRPC ext_authz listener"},
		{"http", "the public HTTP listener"},
		{"admin", "the admin HTTP listener"},
	} {
		t.Run(c.key, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte("package guestgate.authz\n\ndecision := {"), 0o600); err != nil {
				t.Fatal(err)
			}
			listen := map[string]string{"grpc": "127.0.0.1:0", "http": "127.0.0.1:0", "admin": "127.0.0.1:0"}
			listen[c.key] = addr
			doc := "policy:\n  dir: .\nlisten:\n"
			for _, k := range []string{"grpc", "http", "admin"} {
				doc += "  " + k + ": " + listen[k] + "\n"
			}
			cfgPath := filepath.Join(dir, "guestgate.yaml")
			if err := os.WriteFile(cfgPath, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			var errOut bytes.Buffer
			if code := run([]string{"serve", "--config", cfgPath}, nil, &bytes.Buffer{}, &errOut); code != 1 {
				t.Fatalf("exit %d, want 1:\n%s", code, errOut.String())
			}
			msg := errOut.String()
			for _, want := range []string{"listen." + c.key + ": ", c.name, addr, "address already in use", "set listen." + c.key} {
				if !strings.Contains(msg, want) {
					t.Errorf("error does not hold %q:\n%s", want, msg)
				}
			}
			if strings.Contains(msg, "authz.rego") {
				t.Errorf("the policy was loaded before the listener was tried:\n%s", msg)
			}
		})
	}
}

const exampleConfig = "config/guestgate.example.yaml"

// TestValidateOfTheExampleSaysEverythingItNeeds: on a machine without the
// example's secrets and files, validate lists every one with its key; with
// exactly those provided (the /etc paths moved to a scratch directory, as
// a volume would put them), it passes: the list was complete.
func TestValidateOfTheExampleSaysEverythingItNeeds(t *testing.T) {
	repoRoot(t)
	envs := []string{"GUESTGATE_ACME_GUEST_SECRET", "GUESTGATE_ACME_BACKEND_SECRET"}
	for _, e := range envs {
		t.Setenv(e, "") // restored after the test
		os.Unsetenv(e)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"validate", "--config", exampleConfig}, nil, &out, &errOut); code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, errOut.String())
	}
	msg := errOut.String()
	for _, want := range []string{
		"environment variable GUESTGATE_ACME_GUEST_SECRET: not set (tokens.issuers[1].secret_env)",
		"environment variable GUESTGATE_ACME_BACKEND_SECRET: not set (issuer.integrations[0].secret_env)",
		"directory /etc/guestgate/policies: no such file or directory (policy.dir)",
		"file /etc/guestgate/keys/sat-2026-11.pem: no such file or directory (minting.secure_anonymous.key_files[0])",
		"file /etc/guestgate/keys/sat-2026-05.pem: no such file or directory (minting.secure_anonymous.key_files[1])",
		"file /etc/guestgate/keys/access-2026-11.pem: no such file or directory (minting.access.key_files[0])",
		"file /etc/guestgate/keys/sessions-2026-11.pem: no such file or directory (minting.xbs_anonymous.key_files[0])",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("validate does not say %q:\n%s", want, msg)
		}
	}
	if strings.Count(msg, "\n  ") != 7 {
		t.Errorf("want exactly seven needs listed:\n%s", msg)
	}

	// Provide exactly what was listed.
	root := t.TempDir()
	doc, err := os.ReadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	moved := strings.ReplaceAll(string(doc), "/etc/guestgate/", root+"/")
	if moved == string(doc) {
		t.Fatal("the example no longer names /etc/guestgate/: update the test")
	}
	cfgPath := filepath.Join(root, "guestgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(moved), 0o600); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs("policies")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(abs, filepath.Join(root, "policies")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeExampleKeys(t, filepath.Join(root, "keys"))
	t.Setenv(envs[0], "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0=")
	t.Setenv(envs[1], strings.Repeat("s", 40))
	out.Reset()
	errOut.Reset()
	if code := run([]string{"validate", "--config", cfgPath}, nil, &out, &errOut); code != 0 {
		t.Fatalf("with everything it listed provided, validate still fails (exit %d):\n%s", code, errOut.String())
	}
	if !strings.HasPrefix(out.String(), "ok: config "+cfgPath) {
		t.Fatalf("stdout %q", out.String())
	}
}

// writeExampleKeys writes the signing keys config/guestgate.example.yaml
// names into dir: new ones, a deployment's own, never the published
// development keys (refused outside the development setup).
func writeExampleKeys(t *testing.T, dir string) {
	t.Helper()
	for name, rsaKey := range map[string]bool{
		"sat-2026-11.pem": false, "sat-2026-05.pem": false, "access-2026-11.pem": false, "sessions-2026-11.pem": true,
	} {
		var priv any
		var err error
		if rsaKey {
			priv, err = rsa.GenerateKey(rand.Reader, 2048)
		} else {
			priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		}
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
