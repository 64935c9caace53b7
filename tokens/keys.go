package tokens

// The life cycle of an issuer's key set: built from a file, inline JSON, a
// URL or a fixed set; a URL set refetched in the background and on a miss,
// kept while fetches fail until MaxStale, then failing closed. Reading a
// JWKS is jwks.go; which URLs may be fetched is keyurl.go.

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"golang.org/x/sync/singleflight"
)

// Key set defaults and bounds.
const (
	DefaultKeyRefresh    = time.Hour
	DefaultKeyMaxStale   = 24 * time.Hour
	DefaultKeyMinRefetch = 10 * time.Second

	// MaxJWKSSize bounds a JWKS document (file, inline or fetched). Real
	// ones are a few KiB; anything near this is not a key set.
	MaxJWKSSize = 1 << 20

	// keyFetchTimeout bounds one fetch of a JWKS URL, the start fetch
	// included, whatever the HTTP client's own timeout.
	keyFetchTimeout = 10 * time.Second
)

// KeySource says where an issuer's verification keys come from. Exactly one
// of File, Inline and URL is set.
type KeySource struct {
	// File is the path of a JWKS file, read once.
	File string
	// Inline is a JWKS JSON document.
	Inline string
	// URL is a JWKS URL, such as a Cognito user pool's
	// https://cognito-idp.<region>.amazonaws.com/<pool>/.well-known/jwks.json.
	// It must be https; plain http is taken only for a loopback host
	// (127.0.0.1, ::1, localhost), for tests.
	URL string
	// Refresh is how often a URL set is fetched again in the background.
	// Zero: DefaultKeyRefresh.
	Refresh time.Duration
	// MaxStale is how long after the last successful fetch a URL set keeps
	// serving its keys while fetches fail. After that, Key fails closed
	// with keys_unavailable. Zero: DefaultKeyMaxStale.
	MaxStale time.Duration
	// MinRefetch bounds the fetches tokens can cause: a token naming an
	// unknown kid (or meeting an unavailable set) makes the set fetch again
	// only when no fetch happened for MinRefetch, so made-up kids cannot
	// make guestgate hammer the URL. Zero: DefaultKeyMinRefetch.
	MinRefetch time.Duration
}

// KeyHooks are called, when set, on the events metrics count. They must be
// quick and safe for concurrent use.
type KeyHooks struct {
	// OnFetch is called after every fetch of a JWKS URL, err nil on success.
	OnFetch func(url string, err error)
}

// KeySetStatus reports a key set for readiness and diagnostics.
type KeySetStatus struct {
	Source    string    // the URL, the file path, "inline" or "static"
	Keys      int       // keys in the set currently served
	Ready     bool      // Key can find keys (false before the first good fetch and after MaxStale)
	LastFetch time.Time // when the URL was last fetched (zero for other sources)
	LastError string    // the last fetch's error, "" after a success
}

// KeySet holds an issuer's verification keys: public keys only, each
// usable with a signature algorithm, selected by kid. A URL set refreshes
// itself; file, inline and static sets never change. It is safe for
// concurrent use.
type KeySet struct {
	source string // for Status
	url    string // "" for a fixed set
	client *http.Client
	hooks  KeyHooks

	refresh, maxStale, minRefetch time.Duration
	now                           func() time.Time

	keys        atomic.Pointer[keyState] // nil until the first good fetch
	lastSuccess atomic.Int64             // clock's UnixNano of the last good fetch
	stale       atomic.Bool              // MaxStale passed since lastSuccess, Version bumped
	version     atomic.Uint64

	fetches singleflight.Group

	mu        sync.Mutex // guards the fields below
	lastFetch time.Time  // last fetch attempt, by the clock
	lastErr   string
	closed    bool

	ctx     context.Context // cancelled by Close: ends fetches and the refresher
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the refresher and fetches in flight
	closeMu sync.Once
}

// keyState is one immutable generation of a key set.
type keyState struct {
	byKID  map[string]jwk.Key
	only   jwk.Key // the key when the set has exactly one, for tokens without kid
	n      int
	digest [sha256.Size]byte // of the keys' content, to tell a change from a refetch
}

// NewKeySet builds the key set src describes. A file or inline set is
// parsed now and any problem is an error. A URL set is fetched now too, but
// a failed fetch is not an error: the set is not ready (Status) and Key
// answers keys_unavailable until a fetch succeeds, so a sidecar can start
// while its identity provider is briefly unreachable. client nil: a client
// with a bounded timeout. Close the set when done with it.
func NewKeySet(ctx context.Context, src KeySource, client *http.Client, hooks KeyHooks) (*KeySet, error) {
	return newKeySet(ctx, src, client, hooks, time.Now)
}

// newKeySet is NewKeySet with a clock: the Verifier's (Config.Now), which
// MinRefetch and MaxStale are measured on.
func newKeySet(ctx context.Context, src KeySource, client *http.Client, hooks KeyHooks, now func() time.Time) (*KeySet, error) {
	n := 0
	for _, s := range []string{src.File, src.Inline, src.URL} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("key source: set exactly one of File, Inline and URL")
	}
	if src.Refresh < 0 || src.MaxStale < 0 || src.MinRefetch < 0 {
		return nil, errors.New("key source: Refresh, MaxStale and MinRefetch must not be negative")
	}
	k := &KeySet{now: now}
	k.ctx, k.cancel = context.WithCancel(context.Background())

	switch {
	case src.File != "":
		data, err := readBounded(src.File, MaxJWKSSize)
		if err != nil {
			return nil, fmt.Errorf("JWKS file: %w", err)
		}
		st, err := parseKeySet(data)
		if err != nil {
			return nil, fmt.Errorf("JWKS file %s: %w", src.File, err)
		}
		k.source = src.File
		k.install(st)
		return k, nil
	case src.Inline != "":
		if len(src.Inline) > MaxJWKSSize {
			return nil, fmt.Errorf("inline JWKS: larger than %d bytes", MaxJWKSSize)
		}
		st, err := parseKeySet([]byte(src.Inline))
		if err != nil {
			return nil, fmt.Errorf("inline JWKS: %w", err)
		}
		k.source = "inline"
		k.install(st)
		return k, nil
	}

	if err := checkKeyURL(src.URL); err != nil {
		return nil, err
	}
	k.source, k.url = src.URL, src.URL
	k.hooks = hooks
	k.refresh = cmp.Or(src.Refresh, DefaultKeyRefresh)
	k.maxStale = cmp.Or(src.MaxStale, DefaultKeyMaxStale)
	k.minRefetch = cmp.Or(src.MinRefetch, DefaultKeyMinRefetch)
	k.client = keyClient(client)

	// The start fetch: bounded, and its failure only means "not ready".
	startCtx, cancel := context.WithTimeout(ctx, keyFetchTimeout)
	k.fetch(startCtx)
	cancel()

	k.wg.Add(1)
	go k.refresher()
	return k, nil
}

// NewStaticKeySet builds a fixed key set from set, such as the public keys
// of the kinds guestgate mints (Signer.PublicKeys). It is checked as a
// JWKS file is.
func NewStaticKeySet(set jwk.Set) (*KeySet, error) {
	if set == nil {
		return nil, errors.New("static key set: nil")
	}
	data, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("static key set: %w", err)
	}
	st, err := parseKeySet(data)
	if err != nil {
		return nil, fmt.Errorf("static key set: %w", err)
	}
	k := &KeySet{source: "static", now: time.Now}
	k.ctx, k.cancel = context.WithCancel(context.Background())
	k.install(st)
	return k, nil
}

// Key returns the key whose kid is kid. kid "" finds the key of a set of
// exactly one key. The error is an *Error: unknown_key when no key has that
// kid, keys_unavailable when the set has no keys to offer (never fetched,
// or stale beyond MaxStale). A URL set refetches on a miss, at most once per
// MinRefetch; concurrent misses wait for the same fetch.
func (k *KeySet) Key(ctx context.Context, kid string) (jwk.Key, error) {
	if key, ok := k.lookup(kid); ok {
		return key, nil
	}
	if k.url != "" {
		k.refetchOnMiss(ctx)
		if key, ok := k.lookup(kid); ok {
			return key, nil
		}
	}
	if k.current() == nil {
		return nil, errorf(CodeKeysUnavailable, "no usable keys (%s)", k.source)
	}
	if kid == "" {
		return nil, errorf(CodeUnknownKey, "kid absent and the key set has more than one key")
	}
	return nil, errorf(CodeUnknownKey, "no key with this kid")
}

// Version changes whenever the keys Key can return change: a fetch that
// brings different keys, and the set going stale beyond MaxStale or coming
// back. A verified-token cache drops what it verified under another version.
func (k *KeySet) Version() uint64 {
	k.current() // notices MaxStale passing
	return k.version.Load()
}

// Status reports the key set.
func (k *KeySet) Status() KeySetStatus {
	s := KeySetStatus{Source: k.source}
	if st := k.current(); st != nil {
		s.Keys, s.Ready = st.n, true
	}
	k.mu.Lock()
	s.LastFetch, s.LastError = k.lastFetch, k.lastErr
	k.mu.Unlock()
	return s
}

// Close stops the background refresh and any fetch in flight, and waits for
// them. Key keeps answering from the keys held.
func (k *KeySet) Close() {
	if k == nil {
		return
	}
	k.closeMu.Do(func() {
		k.mu.Lock()
		k.closed = true
		k.mu.Unlock()
		k.cancel()
		k.wg.Wait()
	})
}

// current returns the keys to serve, or nil when there are none or a URL
// set's last good fetch is older than MaxStale.
func (k *KeySet) current() *keyState {
	st := k.keys.Load()
	if st == nil || k.url == "" {
		return st
	}
	if k.now().Sub(time.Unix(0, k.lastSuccess.Load())) > k.maxStale {
		// Fail closed, and make caches drop what these keys verified.
		if k.stale.CompareAndSwap(false, true) {
			k.version.Add(1)
		}
		return nil
	}
	return st
}

func (k *KeySet) lookup(kid string) (jwk.Key, bool) {
	st := k.current()
	if st == nil {
		return nil, false
	}
	if kid == "" {
		return st.only, st.only != nil
	}
	key, ok := st.byKID[kid]
	return key, ok
}

// install serves st, bumping the version when its content differs from
// what was served.
func (k *KeySet) install(st *keyState) {
	old := k.keys.Swap(st)
	k.lastSuccess.Store(k.now().UnixNano())
	wasStale := k.stale.Swap(false)
	if old == nil || old.digest != st.digest || wasStale {
		k.version.Add(1)
	}
}

// refetchOnMiss fetches the URL again unless a fetch happened less than
// MinRefetch ago, and waits (as long as ctx allows) for the fetch, which
// concurrent misses share.
func (k *KeySet) refetchOnMiss(ctx context.Context) {
	ch := k.fetches.DoChan("fetch", func() (any, error) {
		k.mu.Lock()
		due := k.lastFetch.IsZero() || k.now().Sub(k.lastFetch) >= k.minRefetch
		k.mu.Unlock()
		return due && k.fetchTracked(), nil
	})
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// refresher fetches the URL every Refresh, and sooner (backing off from
// MinRefetch) while fetches fail, until Close.
func (k *KeySet) refresher() {
	defer k.wg.Done()
	// After a failure, retry after MinRefetch, then twice as long each
	// time, up to Refresh: a brief outage heals fast, a long one costs the
	// identity provider little.
	retry := func(prev time.Duration, failing bool) time.Duration {
		if !failing {
			return min(k.minRefetch, k.refresh)
		}
		return min(2*prev, k.refresh)
	}
	failing := !k.Status().Ready
	wait := k.refresh
	if failing {
		wait = retry(0, false)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-k.ctx.Done():
			return
		case <-timer.C:
		}
		res := <-k.fetches.DoChan("fetch", func() (any, error) {
			return k.fetchTracked(), nil
		})
		if ok, _ := res.Val.(bool); ok {
			wait, failing = k.refresh, false
		} else {
			wait, failing = retry(wait, failing), true
		}
		timer.Reset(wait)
	}
}

// fetchTracked is fetch, registered with Close. It reports success.
func (k *KeySet) fetchTracked() bool {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return false
	}
	k.wg.Add(1)
	k.mu.Unlock()
	defer k.wg.Done()
	ctx, cancel := context.WithTimeout(k.ctx, keyFetchTimeout)
	defer cancel()
	return k.fetch(ctx)
}

// fetch gets, checks and installs the URL's key set. A failure keeps the
// keys held. It reports success.
func (k *KeySet) fetch(ctx context.Context) bool {
	st, err := k.get(ctx)
	k.mu.Lock()
	k.lastFetch = k.now()
	if err != nil {
		k.lastErr = err.Error()
	} else {
		k.lastErr = ""
		k.install(st)
	}
	k.mu.Unlock()
	if k.hooks.OnFetch != nil {
		k.hooks.OnFetch(k.url, err)
	}
	return err == nil
}

func (k *KeySet) get(ctx context.Context) (*keyState, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", k.url, err)
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("JWKS fetch: %w", err) // *url.Error names the URL
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Drain a little so the connection can be reused; never read the
		// body into the error.
		_, _ = io.CopyN(io.Discard, resp.Body, 4096)
		return nil, fmt.Errorf("JWKS %s: HTTP status %d", k.url, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: reading the body: %w", k.url, err)
	}
	if len(data) > MaxJWKSSize {
		return nil, fmt.Errorf("JWKS %s: larger than %d bytes", k.url, MaxJWKSSize)
	}
	st, err := parseKeySet(data)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", k.url, err)
	}
	return st, nil
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return data, nil
}
