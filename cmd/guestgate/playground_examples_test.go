package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/guestgate/guestgate/playground"
	"github.com/guestgate/guestgate/tokens"
)

// runExample runs code as the page shows it, with the client secret in the
// environment variable the examples read, and returns its standard output.
func runExample(t *testing.T, interpreter, code, secret string, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	name := map[string]string{"bash": "mint.sh", "python3": "mint.py", "go": "main.go", "node": "mint.mjs"}[interpreter]
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, []byte(code), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, interpreter, append(args, file)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), playground.SecretEnv+"="+secret)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", interpreter, name, err, stdout.String(), stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// servedExamples fetches the examples exactly as the page receives them.
func servedExamples(t *testing.T, admin string, q url.Values) map[string]string {
	t.Helper()
	resp, err := testClient.Get(admin + "/playground/examples.json?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("examples.json answered %d", resp.StatusCode)
	}
	var list []playground.Example
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range list {
		out[e.Lang] = e.Code
	}
	return out
}

func TestMintExamplesRunAsShownAndMint(t *testing.T) {
	s := startDevWith(t, nil)
	admin := "http://" + s.adminLis.Addr().String()
	requireIssuerMounted(t, admin)
	secret := devSATSecret(t)
	// A body that needs quoting in every language: quotes, a backslash, a
	// shell expansion, non-ASCII and an astral character.
	body := `{"first_name":"O'Brien \"Bob\" $(touch pwned) \\ Zoë 🦊","metadata":{"plan":"trial"}}`
	examples := servedExamples(t, admin, url.Values{
		"account_id": {"dev-account"}, "provider_id": {"dev-provider"}, "client_id": {"dev-admin"}, "body": {body},
	})
	cases := []struct {
		lang, interpreter string
		args              []string
		needs             []string // besides the interpreter
	}{
		{"curl", "bash", nil, []string{"curl", "openssl", "awk"}},
		{"python", "python3", nil, nil},
		{"go", "go", []string{"run"}, nil},
		{"node", "node", nil, nil},
	}
	for _, c := range cases {
		t.Run(c.lang, func(t *testing.T) {
			for _, bin := range append([]string{c.interpreter}, c.needs...) {
				if _, err := exec.LookPath(bin); err != nil {
					t.Skipf("%s is not installed (.ci/run installs curl, openssl and python3): the %s example is not run here", bin, c.lang)
				}
			}
			code := examples[c.lang]
			if code == "" || strings.Contains(code, secret) {
				t.Fatalf("the %s example is missing or carries the secret", c.lang)
			}
			// Each example prints the token: as a JSON string (curl, Python's
			// print of the decoded string is bare) or bare.
			out := strings.Trim(runExample(t, c.interpreter, code, secret, c.args...), `"`)
			tok, err := s.verifier.Load().Verify(context.Background(), out)
			if err != nil {
				t.Fatalf("the %s example printed %q, not a token that verifies: %v", c.lang, out, err)
			}
			if tok.Kind != tokens.KindSecureAnonymous || tok.Claims()["provider_id"] != "dev-provider" {
				t.Fatalf("the %s example minted %s for provider %v", c.lang, tok.Kind, tok.Claims()["provider_id"])
			}
			if got := tok.Claims()["first_name"]; got != `O'Brien "Bob" $(touch pwned) \ Zoë 🦊` {
				t.Fatalf("the %s example sent first_name %q", c.lang, got)
			}
		})
	}
	if _, err := os.Stat("pwned"); err == nil {
		os.Remove("pwned")
		t.Fatal("an example expanded $(...) from the body")
	}
}
