package config

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/open-policy-agent/opa/v1/plugins/rest"
)

// The bundle download's bound. OPA's downloader parses every file of a
// download (Rego included) before guestgate's readBundle counts the
// revision's bytes, and bounds files one by one only: a bundle server,
// compromised or misconfigured, could make it parse a download of any
// size. Every service's HTTP client therefore reads at most
// MaxBundleDownloadBytes of a response body and fails the read past it,
// so the downloader refuses the download (counted as failed; the serving
// revision stays) before it holds more.

// MaxBundleDownloadBytes is the bound on one bundle download's bytes as
// sent (gzipped), for a revision bound of maxRevisionBytes: twice it, and
// 1 MiB for the tar headers, the manifest and the signatures. A bundle
// within the revision bound compresses to less.
func MaxBundleDownloadBytes(maxRevisionBytes int64) int64 {
	return 2*maxRevisionBytes + 1<<20
}

// ErrBundleDownloadTooLarge is the read error of a download over its bound.
var ErrBundleDownloadTooLarge = errors.New("bundle download over its size bound (policy.max_revision_bytes)")

// boundedAuthPlugin is the service's credentials (bearer, OAuth2, client
// TLS, ... as its config names them, or none) with a bounded response body:
// OPA's REST client takes its HTTP client from its auth plugin, the one
// place a transport can be wrapped. It is installed under boundedPluginName
// by boundServiceConfig; the service's own credentials section is kept and
// read here.
type boundedAuthPlugin struct {
	max   int64
	mu    sync.Mutex
	inner rest.HTTPAuthPlugin
}

const boundedPluginName = "guestgate-bounded-download"

func (p *boundedAuthPlugin) NewClient(c rest.Config) (*http.Client, error) {
	c.Credentials.Plugin = nil // the service's own credentials choose the plugin
	inner, err := c.AuthPlugin(nil)
	if err != nil {
		return nil, err
	}
	hc, err := inner.NewClient(c)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.inner = inner
	p.mu.Unlock()
	bounded := *hc
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	bounded.Transport = boundedTransport{base: base, max: p.max}
	return &bounded, nil
}

func (p *boundedAuthPlugin) Prepare(r *http.Request) error {
	p.mu.Lock()
	inner := p.inner
	p.mu.Unlock()
	if inner == nil {
		return errors.New("bundle service: no HTTP client")
	}
	return inner.Prepare(r)
}

// boundedTransport bounds every response body it passes on.
type boundedTransport struct {
	base http.RoundTripper
	max  int64
}

func (t boundedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: Content-Length %d over %d bytes", ErrBundleDownloadTooLarge, resp.ContentLength, t.max)
	}
	resp.Body = &boundedBody{rc: resp.Body, left: t.max}
	return resp, nil
}

// boundedBody reads at most left bytes, and fails past them: never a
// silent cut, which a tarball reader could take for its end.
type boundedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more says whether the body goes on past the bound.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, ErrBundleDownloadTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *boundedBody) Close() error { return b.rc.Close() }

// boundServiceConfig installs the bounded plugin in a service's config (a
// copy): a service that names a credentials plugin of its own is refused,
// as guestgate registers none.
func boundServiceConfig(v any) (any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return v, nil // OPA's parser says what is wrong with it
	}
	out := make(map[string]any, len(m)+1)
	for k, x := range m {
		out[k] = x
	}
	creds := map[string]any{}
	if c, ok := m["credentials"].(map[string]any); ok {
		for k, x := range c {
			creds[k] = x
		}
	} else if m["credentials"] != nil {
		return v, nil
	}
	if _, ok := creds["plugin"]; ok {
		return nil, errors.New("credentials.plugin: guestgate registers no credentials plugins")
	}
	creds["plugin"] = boundedPluginName
	out["credentials"] = creds
	return out, nil
}

// boundedLookup is the REST client's plugin lookup: the bounded plugin,
// one per HTTP client built.
func boundedLookup(max int64) func(*rest.Client) {
	return rest.AuthPluginLookup(func(name string) rest.HTTPAuthPlugin {
		if name != boundedPluginName {
			return nil
		}
		return &boundedAuthPlugin{max: max}
	})
}
