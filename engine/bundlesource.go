package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/download"
	"github.com/open-policy-agent/opa/v1/plugins/rest"
)

// BundleOptions take the policy from an OPA bundle server instead of a
// directory, with OPA's own downloader: polling with ETags (an unchanged
// bundle is a 304 and no reload), long polling where the server offers it
// and the config asks for it, signatures verified with the configured keys.
// A downloaded bundle goes through the same compile and refusal as a
// directory; the last good one keeps serving, and, with PersistDir, is kept
// on disk so that a restart serves it before the server answers.
type BundleOptions struct {
	// Name is the bundle's name in the config (OPA's bundles.<name>).
	Name string
	// Client is the service the bundle is downloaded from. Required.
	Client rest.Client
	// Resource is the bundle's path on that service. Required.
	Resource string
	// Download is OPA's polling config; its defaults are injected here.
	Download download.Config
	// Verification verifies the bundle's signatures: nil accepts unsigned
	// bundles only (a signed one fails for want of a key).
	Verification *bundle.VerificationConfig
	// PersistDir, if set, is where the last good bundle is kept
	// (<dir>/bundle.tar.gz) and read from at start.
	PersistDir string
	// StartTimeout bounds the first download when no persisted bundle
	// serves: New fails after it. Zero means 30s.
	StartTimeout time.Duration
	// OnDownload, if set, is called after every download attempt with its
	// outcome: "ok" (a bundle arrived, whatever its fate), "not_modified"
	// (a 304) or "failed" (no bundle: the server did not answer or
	// answered an error).
	OnDownload func(result string, err error)
}

// BundleStatus is the bundle's part of Status.
type BundleStatus struct {
	Name string `json:"name"`
	// Revision is the serving bundle's manifest revision.
	Revision string `json:"revision"`
	// ETag is the serving bundle's ETag, empty when it came from disk.
	ETag string `json:"etag,omitempty"`
	// FromDisk is true while the serving bundle is the persisted one, not
	// yet confirmed by the server.
	FromDisk bool `json:"from_disk"`
	// LastDownload is when the server last answered (200 or 304).
	LastDownload time.Time `json:"last_download,omitzero"`
	// DownloadError is why the last download failed; empty when it did not.
	DownloadError string `json:"download_error,omitempty"`
}

// bundleSource is the engine's source when it serves a bundle.
type bundleSource struct {
	opts       BundleOptions
	downloader *download.Downloader

	// offered is what the next load attempt reads: the bundle just
	// downloaded or read from disk, or why it was refused. raw is its
	// bytes, persisted once it serves. Guarded by the engine's reloadMu.
	offered struct {
		set  *fileSet
		err  error
		raw  []byte
		etag string
		disk bool
	}
	// serving is the offer that serves, and its ETag. Guarded by reloadMu.
	serving struct {
		set  *fileSet
		etag string
	}

	mu     sync.Mutex
	status BundleStatus
}

const bundleFileName = "bundle.tar.gz"

// newBundleSource builds the downloader; it downloads nothing yet.
func (e *Engine) newBundleSource(opts BundleOptions) (*bundleSource, error) {
	if opts.Resource == "" {
		return nil, errors.New("engine: BundleOptions.Resource is required")
	}
	if err := opts.Download.ValidateAndInjectDefaults(); err != nil {
		return nil, fmt.Errorf("engine: bundle %s: %w", opts.Name, err)
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	b := &bundleSource{opts: opts}
	b.status.Name = opts.Name
	b.downloader = download.New(opts.Download, opts.Client, opts.Resource).
		WithBundleName(opts.Name).
		WithBundleVerificationConfig(opts.Verification).
		WithSizeLimitBytes(e.limits.Revision).
		// The raw bytes are what readBundle reads, and what is persisted.
		WithBundlePersistence(true).
		WithBundleParserOpts(ast.ParserOptions{RegoVersion: ast.RegoV1}).
		WithCallback(e.downloaded)
	return b, nil
}

// read is the bundle source's side of attempt.
func (b *bundleSource) read() (*fileSet, error) {
	if b.offered.err != nil {
		return nil, b.offered.err
	}
	if b.offered.set == nil {
		return nil, fmt.Errorf("%w: no bundle downloaded yet", ErrBundle)
	}
	return b.offered.set, nil
}

// start serves the persisted bundle if there is one, else waits for the
// first download, bounded by StartTimeout.
func (e *Engine) startBundle() error {
	b := e.bundle
	if b.opts.PersistDir != "" {
		raw, err := os.ReadFile(filepath.Join(b.opts.PersistDir, bundleFileName))
		switch {
		case err == nil:
			if err := e.offer(raw, "", true); err == nil {
				return nil
			}
			// Logged and in Status; the server may have a good one.
		case !errors.Is(err, os.ErrNotExist):
			e.log.Warn("cannot read the persisted bundle", "error", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.StartTimeout)
	defer cancel()
	err := b.downloader.Trigger(ctx)
	if e.current.Load() == nil {
		if err == nil && e.bundle.offered.err != nil {
			err = e.bundle.offered.err
		}
		if err == nil {
			if st := e.Status(); st.LastError != "" {
				err = errors.New(st.LastError)
			} else {
				err = fmt.Errorf("%w: the server answered no bundle", ErrBundle)
			}
		}
		return fmt.Errorf("engine: bundle %s: first download: %w", b.opts.Name, err)
	}
	return nil
}

// downloaded is the downloader's callback, after every attempt.
func (e *Engine) downloaded(_ context.Context, u download.Update) error {
	b := e.bundle
	now := time.Now()
	result := "ok"
	switch {
	case u.Error != nil && isDownloadFailure(u.Error):
		result = "failed"
		b.mu.Lock()
		b.status.DownloadError = u.Error.Error()
		b.mu.Unlock()
		e.log.Warn("bundle download failed; the serving revision stays", "bundle", b.opts.Name, "error", u.Error)
	case u.Error != nil:
		// A bundle arrived and OPA's reader refused it (signature,
		// manifest, roots): a refused reload like any other.
		e.markDownload(now)
		e.offerError(fmt.Errorf("%w: %w", ErrBundle, u.Error))
	case u.Bundle == nil:
		result = "not_modified"
		e.markDownload(now)
		e.confirm(u.ETag)
	default:
		e.markDownload(now)
		// A refusal is logged, counted and kept in Status by the load
		// attempt; returned here, OPA's downloader would log it again as
		// a failed download.
		if raw, err := io.ReadAll(u.Raw); err != nil {
			e.offerError(fmt.Errorf("%w: reading the download: %w", ErrBundle, err))
		} else {
			_ = e.offer(raw, u.ETag, false)
		}
	}
	if b.opts.OnDownload != nil {
		b.opts.OnDownload(result, u.Error)
	}
	return nil
}

// isDownloadFailure tells a download that brought no bundle (the server
// unreachable or answering an error) from a bundle OPA's reader refused.
func isDownloadFailure(err error) bool {
	var httpErr download.HTTPError
	if errors.As(err, &httpErr) {
		return true
	}
	var netErr interface{ Timeout() bool }
	return errors.As(err, &netErr) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		strings.HasPrefix(err.Error(), "request failed")
}

func (e *Engine) markDownload(at time.Time) {
	e.bundle.mu.Lock()
	e.bundle.status.LastDownload, e.bundle.status.DownloadError = at, ""
	e.bundle.mu.Unlock()
}

// offer reads a bundle's bytes and runs a load attempt on them.
func (e *Engine) offer(raw []byte, etag string, disk bool) error {
	set, err := readBundle(raw, e.bundle.opts.Verification, e.limits)
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	o := &e.bundle.offered
	o.set, o.err, o.raw, o.etag, o.disk = set, err, raw, etag, disk
	return e.reloadLocked(true)
}

// confirm handles a 304. OPA's downloader keeps sending the ETag of the
// last bundle it read even after a refused one (a failed download clears
// its ETag, but not the If-None-Match header), so a 304 naming the serving
// bundle's ETag says the server is back to the serving bundle: the
// refusal, if any, is over.
func (e *Engine) confirm(etag string) {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	b := e.bundle
	if b.offered.err == nil || b.serving.set == nil || etag == "" || etag != b.serving.etag {
		return
	}
	b.offered.set, b.offered.err, b.offered.raw, b.offered.etag, b.offered.disk = b.serving.set, nil, nil, etag, false
	_ = e.reloadLocked(true)
}

func (e *Engine) offerError(err error) {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	o := &e.bundle.offered
	o.set, o.err, o.raw = nil, err, nil
	_ = e.reloadLocked(true)
}

// served is called, under reloadMu, when the offered bundle serves (swapped
// in, or the same content as the serving one): it becomes the bundle
// status and, from the server, the persisted bundle.
func (b *bundleSource) served(p *policy, log interface{ Warn(string, ...any) }) {
	o := &b.offered
	b.serving.set, b.serving.etag = o.set, o.etag
	b.mu.Lock()
	b.status.Revision = p.revision
	if o.disk {
		b.status.FromDisk = true
	} else {
		b.status.FromDisk, b.status.ETag = false, o.etag
	}
	b.mu.Unlock()
	if o.disk || o.raw == nil || b.opts.PersistDir == "" {
		return
	}
	if err := persist(b.opts.PersistDir, o.raw); err != nil {
		log.Warn("cannot persist the bundle; a restart will wait for the server", "error", err)
	}
	o.raw = nil // persisted once
}

// persist writes the bundle atomically: a restart reads the old one or
// the new one, never half of one.
func persist(dir string, raw []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".bundle-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, bundleFileName))
}

// run polls the bundle server until ctx is done.
func (b *bundleSource) run(ctx context.Context) {
	b.downloader.Start(ctx)
	<-ctx.Done()
	b.downloader.Stop(context.Background())
}

// Trigger downloads the bundle now, for a config whose trigger is manual
// (tests). It returns when the download and its load attempt are done.
func (e *Engine) Trigger(ctx context.Context) error {
	if e.bundle == nil {
		return errors.New("engine: no bundle configured")
	}
	return e.bundle.downloader.Trigger(ctx)
}

func (b *bundleSource) statusCopy() *BundleStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.status
	return &st
}
