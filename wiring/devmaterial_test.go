package wiring_test

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/tokens"
	"github.com/guestgate/guestgate/wiring"
)

// committedDevelopmentFingerprints fingerprints every key and secret in
// testdata/dev, as the refusal sees them.
func committedDevelopmentFingerprints(t *testing.T) map[string]string {
	t.Helper()
	t.Chdir(testsupport.RepoRoot(t))
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
			fp, err := wiring.KeyFingerprint(sk.Private)
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
				fp, err := wiring.KeyFingerprint(k)
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
			add(wiring.SecretFingerprint(secret), rel)
		case ".secret":
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			add(wiring.SecretFingerprint([]byte(strings.TrimSpace(string(b)))), rel)
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
		if wiring.DevelopmentFingerprints[fp] != file {
			t.Errorf("missing from developmentFingerprints: %q: %q,", fp, file)
		}
	}
	for fp := range wiring.DevelopmentFingerprints {
		if _, ok := got[fp]; !ok {
			t.Errorf("developmentFingerprints lists %s, which no committed file has", fp)
		}
	}
}

// TestPublishedDevelopmentCredentialsAreRefusedOutsideDevelopment: a config
// that is not the development setup but names a committed development key
// or secret is refused by every way to build from it (the verifier with
// the signer, as serve and validate build them; the signer alone, as mint
// does), naming the config key and never the secret; fresh credentials
// are accepted, and the development setup itself keeps the published ones.
func TestPublishedDevelopmentCredentialsAreRefusedOutsideDevelopment(t *testing.T) {
	dir, cfgPath := testsupport.CopyDevelopment(t, map[string]string{"development: true": "development: false"})
	fresh := t.TempDir()
	testsupport.CopyTree(t, filepath.Join(dir, "dev"), fresh)
	testsupport.ReplaceDevelopmentCredentials(t, fresh)
	root := testsupport.RepoRoot(t)
	builds := []struct {
		name  string
		build func(*config.Config) error
	}{
		{"Tokens", func(cfg *config.Config) error {
			_, v, err := wiring.Tokens(context.Background(), cfg, wiring.Options{})
			if err == nil {
				v.Close()
			}
			return err
		}},
		{"Signer", func(cfg *config.Config) error { _, err := wiring.Signer(cfg); return err }},
		{"SignerConfig", func(cfg *config.Config) error { _, err := wiring.SignerConfig(cfg); return err }},
	}
	useFresh := func(t *testing.T) {
		for _, sub := range []string{"keys", "secrets"} {
			testsupport.CopyTree(t, filepath.Join(fresh, sub), filepath.Join(dir, "dev", sub))
		}
	}

	// One published file at a time among fresh ones: each is named.
	for _, tc := range []struct{ file, key string }{
		{"keys/xbs-dev-1.pem", "minting.xbs_anonymous.key_files[0]"},
		{"keys/sat-dev-0.pem", "minting.secure_anonymous.key_files[1]"},
		{"keys/access-dev-1.pem", "minting.access.key_files[0]"},
		{"secrets/guest-dev.b64", "tokens.issuers[1].secret_file"},
		{"secrets/sat-admin-dev.secret", "issuer.integrations[0].secret_file"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			useFresh(t)
			published, err := os.ReadFile(filepath.Join(root, "testdata", "dev", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "dev", tc.file), published, 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range builds {
				err := b.build(cfg)
				if err == nil {
					t.Fatalf("%s accepted a published development credential outside the development setup", b.name)
				}
				msg := err.Error()
				if !strings.Contains(msg, tc.key) || !strings.Contains(msg, tc.file) {
					t.Errorf("%s: error %q does not name %s and %s", b.name, msg, tc.key, tc.file)
				}
				if s := strings.TrimSpace(string(published)); filepath.Ext(tc.file) != ".pem" && strings.Contains(msg, s) {
					t.Errorf("%s: error holds the secret: %s", b.name, msg)
				}
			}
		})
	}
	// All fresh: accepted.
	useFresh(t)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range builds {
		if err := b.build(cfg); err != nil {
			t.Fatalf("%s: fresh credentials refused: %v", b.name, err)
		}
	}
	// The development setup keeps the published ones.
	dev, err := config.Load(filepath.Join(root, config.DevelopmentFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range builds {
		if err := b.build(dev); err != nil {
			t.Fatalf("%s: the development setup's own credentials refused: %v", b.name, err)
		}
	}
}
