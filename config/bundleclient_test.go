package config

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/download"
)

// bundleServiceDoc is a bundle config of one service at url, with a
// bearer token, and a revision bound of 1 KiB.
func bundleServiceDoc(url string) string {
	return fmt.Sprintf(`
policy:
  max_revision_bytes: 1024
services:
  acme:
    url: %s
    credentials:
      bearer:
        token: s3cret
bundles:
  authz:
    service: acme
    resource: bundle.tar.gz
`, url)
}

// manyFilesBundle is a gzipped tarball of n data files, each under the
// per-file bound, of random (incompressible) content.
func manyFilesBundle(t *testing.T, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	raw := make([]byte, 400)
	for i := range n {
		_, _ = rand.Read(raw)
		body := []byte(`"` + hex.EncodeToString(raw) + `"`)
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("/d%d/data.json", i), Mode: 0o644, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(body)
	}
	_ = tw.Close()
	_ = gz.Close()
	return buf.Bytes()
}

// A bundle server's answer is read up to the download bound and no
// further: OPA's downloader, which parses every file before guestgate
// counts the revision, sees a read error past it, whether or not the
// server says the length; the service's own credentials are still sent;
// an answer within the bound is read whole.
func TestBundleDownloadIsBoundedBeforeOPAParsesIt(t *testing.T) {
	big := manyFilesBundle(t, 3000) // files of 802 bytes, 2.4 MB in all, gzip cannot shrink them
	small := manyFilesBundle(t, 1)
	var sent atomic.Int64
	var auth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth.Store(r.Header.Get("Authorization"))
		body := big
		switch r.URL.Query().Get("v") {
		case "small":
			body = small
		case "length":
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
		default:
			w.Header().Set("Transfer-Encoding", "chunked")
		}
		for rest := body; len(rest) > 0; {
			n := min(len(rest), 32<<10)
			m, err := w.Write(rest[:n])
			sent.Add(int64(m))
			if err != nil {
				return
			}
			rest = rest[n:]
		}
	}))
	defer srv.Close()
	c, err := decode([]byte(bundleServiceDoc(srv.URL)), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bound := MaxBundleDownloadBytes(c.Policy.MaxRevisionBytes)
	if int64(len(big)) <= bound || int64(len(small)) > bound {
		t.Fatalf("fixture: big %d, small %d bytes, bound %d", len(big), len(small), bound)
	}
	src, err := c.OPABundles.Source(nil, c.Policy.MaxRevisionBytes)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, v := range []string{"chunked", "length"} {
		resp, err := src.Client.Do(ctx, "GET", "bundle.tar.gz?v="+v)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if !errors.Is(err, ErrBundleDownloadTooLarge) {
			t.Errorf("%s: a download over %d bytes read with %v, want %v", v, bound, err, ErrBundleDownloadTooLarge)
		}
		if got := auth.Load(); got != "Bearer s3cret" {
			t.Errorf("%s: the service's bearer credentials were not sent: %q", v, got)
		}
	}
	resp, err := src.Client.Do(ctx, "GET", "bundle.tar.gz?v=small")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, small) {
		t.Fatalf("a download within the bound: %d bytes, %v", len(got), err)
	}

	// OPA's own downloader stops at the bound and reports the download
	// refused.
	var update download.Update
	d := download.New(src.Download, src.Client, src.Resource).WithCallback(func(_ context.Context, u download.Update) error {
		update = u
		return nil
	})
	if err := d.Trigger(ctx); err == nil || update.Error == nil || !strings.Contains(update.Error.Error(), ErrBundleDownloadTooLarge.Error()) {
		t.Fatalf("OPA's downloader: %v, update error %v; want it refused at the bound", err, update.Error)
	}
	if update.Bundle != nil {
		t.Fatal("OPA's downloader handed on a bundle over the bound")
	}
}

// A service naming a credentials plugin of its own is refused: guestgate
// registers none, and its bounded client takes that place.
func TestBundleServiceWithACredentialsPluginIsRefused(t *testing.T) {
	doc := strings.Replace(bundleDoc, "    url: https://bundles.acme.example\n", "    url: https://bundles.acme.example\n    credentials:\n      plugin: mine\n", 1)
	c, err := decode([]byte(doc), "/etc/guestgate")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.OPABundles.Source(nil, c.Policy.MaxRevisionBytes); err == nil || !strings.Contains(err.Error(), "credentials.plugin") {
		t.Fatalf("Source: %v, want credentials.plugin refused", err)
	}
}
