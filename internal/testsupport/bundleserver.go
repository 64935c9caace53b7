package testsupport

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BundleServer serves OPA bundles on loopback as a bundle server does: an
// ETag per bundle, 304 for a request whose If-None-Match names it, and long
// polling (a request with "Prefer: wait=N" waits up to N seconds for a new
// bundle, then answers 304) when made with LongPoll. Tests of one guestgate
// or of several read its counts.
type BundleServer struct {
	// URL is the server's base URL (http://127.0.0.1:port); a bundle is at
	// URL + its path.
	URL string

	mu              sync.Mutex
	bundles         map[string][]byte
	changed         chan struct{} // closed and replaced on every Set
	longPoll        bool
	ok, notModified int
}

// StartBundleServer serves until the test ends. longPoll offers long
// polling to clients that ask for it.
func StartBundleServer(tb testing.TB, longPoll bool) *BundleServer {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &BundleServer{URL: "http://" + lis.Addr().String(), bundles: map[string][]byte{}, changed: make(chan struct{}), longPoll: longPoll}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	tb.Cleanup(func() {
		s.mu.Lock()
		close(s.changed) // release long polls
		s.changed = make(chan struct{})
		s.mu.Unlock()
		_ = srv.Close()
	})
	return s
}

// Set serves raw at path (such as /bundles/authz.tar.gz) from now on;
// nil stops serving it (404).
func (s *BundleServer) Set(path string, raw []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if raw == nil {
		delete(s.bundles, path)
	} else {
		s.bundles[path] = raw
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// Counts returns how many bundles were sent (200) and how many requests
// were answered 304 so far.
func (s *BundleServer) Counts() (ok, notModified int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ok, s.notModified
}

func etagOf(raw []byte) string {
	sum := sha256.Sum256(raw)
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}

func (s *BundleServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	wait := time.Duration(0)
	if s.longPoll {
		for _, p := range strings.Split(r.Header.Get("Prefer"), ";") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), "wait="); ok {
				if n, err := strconv.Atoi(v); err == nil && n > 0 {
					wait = time.Duration(n) * time.Second
				}
			}
		}
	}
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	for {
		s.mu.Lock()
		raw, found := s.bundles[r.URL.Path]
		changed := s.changed
		if s.longPoll {
			// Tells OPA's downloader that long polling is on offer.
			w.Header().Set("Content-Type", "application/vnd.openpolicyagent.bundles")
		} else {
			w.Header().Set("Content-Type", "application/gzip")
		}
		if !found {
			s.mu.Unlock()
			http.NotFound(w, r)
			return
		}
		etag := etagOf(raw)
		if !strings.Contains(r.Header.Get("If-None-Match"), etag) {
			s.ok++
			s.mu.Unlock()
			w.Header().Set("ETag", etag)
			_, _ = w.Write(raw)
			return
		}
		if wait == 0 {
			s.notModified++
			s.mu.Unlock()
			w.Header().Set("ETag", etag)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		s.mu.Unlock()
		select {
		case <-changed:
			continue
		case <-timeout:
			wait = 0 // answer 304 now
		case <-r.Context().Done():
			return
		}
	}
}

// SigningKey is an ES256 key pair for signing bundles in tests.
type SigningKey struct {
	// PrivateFile is the private key, PEM, for `opa build --signing-key`.
	PrivateFile string
	// Public is the public key, PEM, for a keys entry.
	Public string
}

// NewSigningKey writes a fresh ES256 private key to a temporary file.
func NewSigningKey(tb testing.TB) SigningKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	f := filepath.Join(tb.TempDir(), "signing.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return SigningKey{PrivateFile: f, Public: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))}
}

// BuildBundle runs `go tool opa build -b` (the OPA the module pins) over
// files (slash paths, a .manifest among them for roots), with revision,
// signed with key when it is not nil, and returns the bundle's bytes. In
// bundle mode OPA reads only data files named data.json or data.yaml: a
// policy directory such as the shipped policies/ is built with
// BuildPolicyBundle.
func BuildBundle(tb testing.TB, files map[string]string, revision string, key *SigningKey) []byte {
	tb.Helper()
	return buildBundle(tb, files, revision, key, true)
}

// BuildPolicyBundle builds a policy directory's files (the shipped
// policies/, say) as docs/bundles.md does, in two steps: `opa build`
// without -b merges every JSON and YAML file into one data.json at its
// folder's path (registry/widgets.json into data.registry), as guestgate's
// directory loader reads them; `opa build -b` over that result signs it
// (OPA signs in bundle mode only).
func BuildPolicyBundle(tb testing.TB, files map[string]string, revision string, key *SigningKey) []byte {
	tb.Helper()
	merged := bundleFiles(tb, buildBundle(tb, files, revision, nil, false))
	return buildBundle(tb, merged, revision, key, true)
}

// bundleFiles reads a bundle's files (slash paths, no leading slash).
func bundleFiles(tb testing.TB, raw []byte) map[string]string {
	tb.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		tb.Fatal(err)
	}
	files := map[string]string{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			tb.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			tb.Fatal(err)
		}
		files[strings.TrimPrefix(h.Name, "/")] = string(body)
	}
}

func buildBundle(tb testing.TB, files map[string]string, revision string, key *SigningKey, bundleMode bool) []byte {
	tb.Helper()
	src := filepath.Join(tb.TempDir(), "src")
	for name, content := range files {
		p := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.MkdirAll(src, 0o755); err != nil {
		tb.Fatal(err)
	}
	out := filepath.Join(tb.TempDir(), "bundle.tar.gz")
	// Built from inside src, so that the bundle's paths are relative to it
	// (guestgate/authz.rego, not the temporary directory's path).
	args := []string{"build", ".", "-o", out, "--revision", revision}
	if bundleMode {
		args = append(args, "-b")
	}
	if key != nil {
		args = append(args, "--signing-key", key.PrivateFile, "--signing-alg", "ES256")
	}
	cmd := exec.Command(opaBinary(tb), args...)
	cmd.Dir = src
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("opa %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// TamperBundle returns raw with the file name's content replaced, its
// signature left as it was: what an attacker between the build and the
// server would serve.
func TamperBundle(tb testing.TB, raw []byte, name, content string) []byte {
	tb.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		tb.Fatal(err)
	}
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	tr := tar.NewReader(zr)
	found := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			tb.Fatal(err)
		}
		if strings.TrimPrefix(h.Name, "/") == strings.TrimPrefix(name, "/") {
			body, found = []byte(content), true
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			tb.Fatal(err)
		}
	}
	if !found {
		tb.Fatalf("TamperBundle: no %s in the bundle", name)
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes()
}

var opaPath struct {
	once sync.Once
	path string
	err  error
}

// opaBinary is the path of the OPA that go.mod pins as a tool (`go tool -n
// opa` builds it once and prints where it is).
func opaBinary(tb testing.TB) string {
	tb.Helper()
	root := RepoRoot(tb)
	opaPath.once.Do(func() {
		cmd := exec.Command("go", "tool", "-n", "opa")
		cmd.Dir = root
		out, err := cmd.Output()
		opaPath.path, opaPath.err = strings.TrimSpace(string(out)), err
	})
	if opaPath.err != nil {
		tb.Fatalf("go tool -n opa: %v", opaPath.err)
	}
	return opaPath.path
}

// DirFiles reads the files under dir (the repository's policies/, say) as
// BuildBundle takes them.
func DirFiles(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return files
}
