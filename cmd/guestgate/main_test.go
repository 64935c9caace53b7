package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/tokens"
	"github.com/guestgate/guestgate/wiring"
)

// repoRoot makes the development setup's relative paths resolve.
func repoRoot(t *testing.T) {
	t.Helper()
	t.Chdir(filepath.Join("..", ".."))
}

// startDev runs the development setup on loopback port 0 in-process and
// returns it once /readyz says ready, with the cancel that stops it and the
// channel serve's result arrives on.
func startDev(t *testing.T) (*sidecar, context.CancelFunc, chan error) {
	t.Helper()
	return runSidecar(t, devConfig(t), nil)
}

// waitReady waits for the sidecar's /readyz to answer 200: it comes up in
// its own goroutine.
func waitReady(t testing.TB, url string) {
	t.Helper()
	testsupport.Eventually(t, url+" to be ready", func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func TestCheckAgainstARunningServerPrintsTheAnswer(t *testing.T) {
	s, _, _ := startDev(t)
	var out, errOut bytes.Buffer
	code := run([]string{"check", "--addr", s.grpcLis.Addr().String(), "--request", "testdata/requests/get-token.json"}, nil, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), `"deniedResponse"`) || !strings.Contains(out.String(), "Unauthorized") {
		t.Fatalf("a request without a token was not answered 401:\n%s", out.String())
	}
}

func TestServeStopsOnCancelAndReportsHealth(t *testing.T) {
	s, cancel, done := startDev(t)
	resp, err := http.Get("http://" + s.adminLis.Addr().String() + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Get("http://" + s.adminLis.Addr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var rd readiness
	if err := json.NewDecoder(resp.Body).Decode(&rd); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !rd.Ready || rd.Policy.Revision == "" || !rd.Config.Development || !strings.HasPrefix(rd.Policy.DecisionCache, "on") {
		t.Fatalf("readiness = %+v", rd)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(15 * time.Second): // a bound: a serve that never stops fails, not hangs
		t.Fatal("serve did not stop")
	}
	done <- nil // let the cleanup's receive succeed
}

func TestCheckOfflineDecidesWithThePolicies(t *testing.T) {
	repoRoot(t)
	var out, errOut bytes.Buffer
	code := run([]string{"check", "--request", "testdata/requests/calendar.json"}, nil, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "decision: denied") || !strings.Contains(out.String(), "status: 401") {
		t.Fatalf("output:\n%s", out.String())
	}
}

func TestBadConfigExitsNonZeroNamingTheKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(p, []byte("listen:\n  grpc: not-an-address\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"serve", "--config", p}, nil, &out, &errOut); code == 0 {
		t.Fatal("a bad config exited 0")
	}
	if !strings.Contains(errOut.String(), "listen.grpc") {
		t.Fatalf("error does not name the key: %s", errOut.String())
	}
}

func TestValidateAcceptsTheDevelopmentSetupAndRefusesABrokenPolicy(t *testing.T) {
	repoRoot(t)
	var out, errOut bytes.Buffer
	if code := run([]string{"validate"}, nil, &out, &errOut); code != 0 {
		t.Fatalf("validate of the development setup: exit %d: %s", code, errOut.String())
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte("package guestgate.authz\n\ndecision := {"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "guestgate.yaml")
	if err := os.WriteFile(cfgPath, []byte("policy:\n  dir: .\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if code := run([]string{"validate", "--config", cfgPath}, nil, &out, &errOut); code == 0 {
		t.Fatal("validate accepted a broken policy")
	}
	if !strings.Contains(errOut.String(), "authz.rego") {
		t.Fatalf("error does not name the file: %s", errOut.String())
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"version"}, nil, &out, io.Discard); code != 0 || !strings.HasPrefix(out.String(), "guestgate ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
}

// TestBadGuestSecretNamesItsConfigKey: a guest secret that is not one
// (not base64, too short) is refused at load with the key it came from,
// never the secret itself.
func TestBadGuestSecretNamesItsConfigKey(t *testing.T) {
	for name, secret := range map[string]string{
		"too short":   "c2hvcnQ=",
		"not base64":  "not base64 at all!!",
		"mixed alpha": strings.Repeat("ab+_", 12),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "partner.b64"), []byte(secret), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := "tokens:\n  issuers:\n    - name: partner\n      kind: guest\n      issuer: partner-1\n      secret_file: partner.b64\n"
			if err := os.WriteFile(filepath.Join(dir, "guestgate.yaml"), []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(dir, "policies"), 0o700); err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			if code := run([]string{"validate", "--config", filepath.Join(dir, "guestgate.yaml")}, nil, &out, &errOut); code == 0 {
				t.Fatal("a bad guest secret was accepted")
			}
			if !strings.Contains(errOut.String(), "tokens.issuers[0].secret_file") {
				t.Errorf("error does not name the key: %s", errOut.String())
			}
			if strings.Contains(errOut.String(), secret) {
				t.Errorf("error holds the secret: %s", errOut.String())
			}
		})
	}
}

// TestCheckOfflineWithATokenFile is the README's policy-author call: one
// request decided offline with a real token from a file or standard input.
func TestCheckOfflineWithATokenFile(t *testing.T) {
	repoRoot(t)
	cfg, err := config.Development()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := wiring.Signer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	link, err := signer.MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryPublicLink, ChannelID: "public-lobby"})
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token.jwt")
	if err := os.WriteFile(tokenFile, []byte(link.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, request, tokenFile string
		stdin                    io.Reader
		want                     string
	}{
		{"from a file", "testdata/requests/mark-read.json", tokenFile, nil, "decision: allowed  status: 200  reason: allowed"},
		{"from standard input", "testdata/requests/calendar.json", "-", strings.NewReader(link.Token), "decision: denied  status: 403  reason: route_not_allowed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run([]string{"check", "--request", c.request, "--token-file", c.tokenFile}, c.stdin, &out, &errOut); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			if !strings.HasPrefix(out.String(), c.want) {
				t.Fatalf("output:\n%s", out.String())
			}
		})
	}
}
