package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/guestgate/guestgate/tokens"
)

// committedDevelopmentFingerprints fingerprints every key and secret in
// testdata/dev, as refuseDevelopmentMaterial sees them.
func committedDevelopmentFingerprints(t *testing.T) map[string]string {
	t.Helper()
	repoRoot(t)
	out := map[string]string{}
	add := func(fp, file string) {
		if prev, ok := out[fp]; ok {
			file = prev // a private key and its JWKS entry: name the first
		}
		out[fp] = file
	}
	keys, _ := filepath.Glob("testdata/dev/keys/*")
	secrets, _ := filepath.Glob("testdata/dev/secrets/*")
	sort.Strings(keys)
	for _, f := range append(keys, secrets...) {
		rel := strings.TrimPrefix(f, "testdata/dev/")
		switch filepath.Ext(f) {
		case ".pem":
			sk, err := tokens.LoadSigningKey(f)
			if err != nil {
				t.Fatal(err)
			}
			fp, err := keyFingerprint(sk.Private)
			if err != nil {
				t.Fatal(err)
			}
			add(fp, rel)
		case ".json":
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			set, err := jwk.Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			for i := range set.Len() {
				k, _ := set.Key(i)
				fp, err := keyFingerprint(k)
				if err != nil {
					t.Fatal(err)
				}
				add(fp, rel)
			}
		case ".b64":
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			secret, err := tokens.DecodeGuestSecret(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			add(secretFingerprint(secret), rel)
		case ".secret":
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			add(secretFingerprint([]byte(strings.TrimSpace(string(b)))), rel)
		case ".md":
		default:
			t.Fatalf("%s: a development file this test does not fingerprint", f)
		}
	}
	return out
}

// TestDevelopmentFingerprintsMatchTheCommittedFiles: the refusal list is
// exactly the committed development material, so adding a development key
// without listing it fails here.
func TestDevelopmentFingerprintsMatchTheCommittedFiles(t *testing.T) {
	got := committedDevelopmentFingerprints(t)
	for fp, file := range got {
		if developmentFingerprints[fp] != file {
			t.Errorf("missing from developmentFingerprints: %q: %q,", fp, file)
		}
	}
	for fp := range developmentFingerprints {
		if _, ok := got[fp]; !ok {
			t.Errorf("developmentFingerprints lists %s, which no committed file has", fp)
		}
	}
}

// replaceDevelopmentCredentials overwrites the copied development keys and
// secrets in dir (a copy of testdata/dev) with fresh ones of the same kind:
// outside the development setup the published ones are refused.
func replaceDevelopmentCredentials(t testing.TB, dir string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	for _, f := range files {
		var content []byte
		switch filepath.Ext(f) {
		case ".pem":
			sk, err := tokens.LoadSigningKey(f)
			if err != nil {
				t.Fatal(err)
			}
			var priv any
			if sk.Algorithm == "RS256" {
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
			content = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		case ".b64":
			content = []byte(base64.StdEncoding.EncodeToString([]byte(rand.Text() + rand.Text())))
		case ".secret":
			content = []byte(rand.Text() + rand.Text())
		case ".json":
			content = []byte(`{"keys":[]}`)
		default:
			continue
		}
		if err := os.WriteFile(f, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPublishedDevelopmentCredentialsAreRefusedOutsideDevelopment: a config
// that is not the development setup but names a committed development key
// or secret is refused, naming the config key and never the secret; the
// development setup itself keeps them.
func TestPublishedDevelopmentCredentialsAreRefusedOutsideDevelopment(t *testing.T) {
	dir, cfgPath := copyDevSetup(t, map[string]string{"development: true": "development: false"})
	fresh := t.TempDir()
	copyTree(t, filepath.Join(dir, "dev"), fresh)
	replaceDevelopmentCredentials(t, fresh)

	// One published file at a time among fresh ones: each is named.
	for _, tc := range []struct{ file, key string }{
		{"keys/xbs-dev-1.pem", "minting.xbs_anonymous.key_files[0]"},
		{"keys/sat-dev-0.pem", "minting.secure_anonymous.key_files[1]"},
		{"keys/access-dev-1.pem", "minting.access.key_files[0]"},
		{"secrets/guest-dev.b64", "tokens.issuers[1].secret_file"},
		{"secrets/sat-admin-dev.secret", "issuer.integrations[0].secret_file"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			for _, sub := range []string{"keys", "secrets"} {
				copyTree(t, filepath.Join(fresh, sub), filepath.Join(dir, "dev", sub))
			}
			published, err := os.ReadFile(filepath.Join("..", "..", "testdata", "dev", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, "dev", tc.file), string(published))
			var out, errOut strings.Builder
			if code := run([]string{"validate", "--config", cfgPath}, nil, &out, &errOut); code == 0 {
				t.Fatal("validate accepted a published development credential outside the development setup")
			}
			msg := errOut.String()
			if !strings.Contains(msg, tc.key) || !strings.Contains(msg, tc.file) {
				t.Errorf("error %q does not name %s and %s", msg, tc.key, tc.file)
			}
			if s := strings.TrimSpace(string(published)); filepath.Ext(tc.file) != ".pem" && strings.Contains(msg, s) {
				t.Errorf("error holds the secret: %s", msg)
			}
		})
	}
	// All fresh: accepted.
	for _, sub := range []string{"keys", "secrets"} {
		copyTree(t, filepath.Join(fresh, sub), filepath.Join(dir, "dev", sub))
	}
	var out, errOut strings.Builder
	if code := run([]string{"validate", "--config", cfgPath}, nil, &out, &errOut); code != 0 {
		t.Fatalf("fresh credentials refused: %s", errOut.String())
	}
}
