package testsupport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/tokens"
)

// RepoRoot is the repository's root: the nearest folder above the working
// directory (a test's package folder) that holds go.mod.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("no go.mod above the working directory: run the test from the repository")
		}
		dir = parent
	}
}

// CopyDevelopment copies the development setup (its config, keys and
// secrets, and the shipped policies/) to a temporary folder, listening on
// port 0, with edits (old text -> new text) applied to the config. It
// returns the folder and the config's path. A copy edited to
// "development: false" gets fresh keys and secrets: outside the
// development setup the published ones are refused.
func CopyDevelopment(tb testing.TB, edits map[string]string) (dir, cfgPath string) {
	tb.Helper()
	root := RepoRoot(tb)
	dir = tb.TempDir()
	CopyTree(tb, filepath.Join(root, "policies"), filepath.Join(dir, "policies"))
	CopyTree(tb, filepath.Join(root, "testdata", "dev", "keys"), filepath.Join(dir, "dev", "keys"))
	CopyTree(tb, filepath.Join(root, "testdata", "dev", "secrets"), filepath.Join(dir, "dev", "secrets"))
	yaml, err := os.ReadFile(filepath.Join(root, config.DevelopmentFile))
	if err != nil {
		tb.Fatal(err)
	}
	cfgText := string(yaml)
	replace := [][2]string{
		{"grpc: 127.0.0.1:9191", "grpc: 127.0.0.1:0"},
		{"http: 127.0.0.1:8181", "http: 127.0.0.1:0"},
		{"admin: 127.0.0.1:8282", "admin: 127.0.0.1:0"},
		{"dir: ../../policies", "dir: ../policies"},
		{"dir: ../../var/state", "dir: ../state"}, // the copy's own state store
	}
	for from, to := range edits {
		replace = append(replace, [2]string{from, to})
	}
	for _, r := range replace {
		if !strings.Contains(cfgText, r[0]) {
			tb.Fatalf("the development setup no longer has %q; update the harness", r[0])
		}
		cfgText = strings.Replace(cfgText, r[0], r[1], 1)
	}
	cfgPath = filepath.Join(dir, "dev", "guestgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		tb.Fatal(err)
	}
	if strings.Contains(cfgText, "development: false") {
		ReplaceDevelopmentCredentials(tb, filepath.Join(dir, "dev"))
	}
	return dir, cfgPath
}

// CopyTree copies the regular files under src to dst.
func CopyTree(tb testing.TB, src, dst string) {
	tb.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o600)
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// ReplaceDevelopmentCredentials overwrites the copied development keys
// and secrets in dir (a copy of testdata/dev) with fresh ones of the same
// kind: outside the development setup the published ones are refused.
func ReplaceDevelopmentCredentials(tb testing.TB, dir string) {
	tb.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	for _, f := range files {
		var content []byte
		switch filepath.Ext(f) {
		case ".pem":
			sk, err := tokens.LoadSigningKey(f)
			if err != nil {
				tb.Fatal(err)
			}
			var priv any
			if sk.Algorithm == "RS256" {
				priv, err = rsa.GenerateKey(rand.Reader, 2048)
			} else {
				priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			}
			if err != nil {
				tb.Fatal(err)
			}
			der, err := x509.MarshalPKCS8PrivateKey(priv)
			if err != nil {
				tb.Fatal(err)
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
			tb.Fatal(err)
		}
	}
}
