package tokens

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/guestgate/guestgate/strictjson"
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
	// maxKeyRedirects bounds the redirects a JWKS fetch follows.
	maxKeyRedirects = 3
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

// newKeySet is NewKeySet with a clock, for tests of MaxStale.
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

// checkKeyURL takes https URLs, and http to a loopback host for tests.
func checkKeyURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("JWKS URL: not a URL")
	}
	if u.Host == "" || u.Opaque != "" {
		return errors.New("JWKS URL: not an absolute URL with a host")
	}
	if u.User != nil {
		return errors.New("JWKS URL: must not hold credentials")
	}
	if u.Fragment != "" {
		return errors.New("JWKS URL: must not have a fragment")
	}
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
		return nil
	}
	return fmt.Errorf("JWKS URL %s: must be https (plain http only to a loopback host)", raw)
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// keyClient returns the client fetches use: a copy of client (or a default
// one) whose redirects are bounded and held to the same URL rule.
func keyClient(client *http.Client) *http.Client {
	var c http.Client
	if client != nil {
		c = *client
	} else {
		c.Timeout = keyFetchTimeout
	}
	inner := c.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxKeyRedirects {
			return errors.New("too many redirects")
		}
		if err := checkKeyURL(req.URL.String()); err != nil {
			return err
		}
		if err := checkKeyRedirect(via[0].URL, req.URL); err != nil {
			return err
		}
		if inner != nil {
			return inner(req, via)
		}
		return nil
	}
	return &c
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

// privateMembers are the JWK members of private or symmetric key material
// (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC 8037 §2).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// parseKeySet parses a JWKS strictly: one JSON object with a "keys" array,
// read by strictjson (no duplicate member names anywhere, nothing after
// it), before jwx sees any of it. Every signature
// key must be a public RSA (at least 2048 bits), EC (P-256, P-384, P-521)
// or Ed25519 key with an alg, when it has one, that fits it; kids are
// unique, and a set of more than one key names each. Keys marked for
// another use than "sig", or with a key-encryption alg (the encryption key
// some IdPs publish beside their signing keys), are left out: they never
// verify a signature. A set with no signature key is an error.
func parseKeySet(data []byte) (*keyState, error) {
	if err := strictjson.Check(data); err != nil {
		return nil, err
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, errors.New(`not a JWKS: want an object with a "keys" array`)
	}
	st := &keyState{byKID: make(map[string]jwk.Key, len(doc.Keys))}
	var keys []jwk.Key
	h := sha256.New()
	for i, raw := range doc.Keys {
		var members map[string]json.RawMessage
		if err := json.Unmarshal(raw, &members); err != nil {
			return nil, fmt.Errorf("keys[%d]: not a JSON object", i)
		}
		for _, m := range privateMembers {
			if _, ok := members[m]; ok {
				return nil, fmt.Errorf("keys[%d]: holds private or symmetric key material (%q); a verification key set must be public", i, m)
			}
		}
		key, err := jwk.ParseKey(raw)
		if err != nil {
			return nil, fmt.Errorf("keys[%d]: not a usable JWK: %v", i, err)
		}
		if use := key.KeyUsage(); use != "" && use != "sig" {
			continue
		}
		if alg := key.Algorithm().String(); alg != "" && !jwsAlgorithms[alg] {
			continue // a key-encryption algorithm (RSA-OAEP, ECDH-ES...): not a signature key
		}
		if err := checkVerificationKey(key); err != nil {
			return nil, fmt.Errorf("keys[%d]: %w", i, err)
		}
		kid := key.KeyID()
		if _, dup := st.byKID[kid]; dup {
			return nil, fmt.Errorf("keys[%d]: duplicate kid %q", i, kid)
		}
		st.byKID[kid] = key
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("the key set has no signature keys")
	}
	if len(keys) > 1 {
		if _, ok := st.byKID[""]; ok {
			return nil, errors.New("a key without kid in a set of several keys: it could never be selected")
		}
	}
	st.n = len(keys)
	if st.n == 1 {
		st.only = keys[0]
	}
	// The digest covers what verification depends on: kid, alg, use and
	// the key itself (its RFC 7638 thumbprint), in kid order.
	slices.SortFunc(keys, func(a, b jwk.Key) int { return strings.Compare(a.KeyID(), b.KeyID()) })
	for _, key := range keys {
		tp, err := key.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("kid %q: %v", key.KeyID(), err)
		}
		fmt.Fprintf(h, "%q %q %q %x\n", key.KeyID(), key.Algorithm().String(), key.KeyUsage(), tp)
	}
	h.Sum(st.digest[:0])
	return st, nil
}

// jwsAlgorithms are the "alg" values of RFC 7518 §3.1 and RFC 8037 §3.1,
// supported or not: a key with another alg is an encryption key.
var jwsAlgorithms = map[string]bool{
	"HS256": true, "HS384": true, "HS512": true, "RS256": true, "RS384": true, "RS512": true,
	"ES256": true, "ES384": true, "ES512": true, "ES256K": true, "PS256": true, "PS384": true, "PS512": true,
	"EdDSA": true, "none": true,
}

// ecdsaAlgorithm is the one JWS algorithm of an EC key's curve (RFC 7518
// §3.4 binds each ES algorithm to its curve).
func ecdsaAlgorithm(c elliptic.Curve) (string, error) {
	switch c {
	case elliptic.P256():
		return "ES256", nil
	case elliptic.P384():
		return "ES384", nil
	case elliptic.P521():
		return "ES512", nil
	}
	return "", errors.New("EC key on an unsupported curve")
}

// checkVerificationKey takes public signature keys of the supported types.
func checkVerificationKey(key jwk.Key) error {
	var raw any
	if err := key.Raw(&raw); err != nil {
		return fmt.Errorf("unusable key: %v", err)
	}
	alg := key.Algorithm().String()
	var algs []string
	switch pub := raw.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key of %d bits; at least %d required", pub.N.BitLen(), minRSABits)
		}
		algs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case *ecdsa.PublicKey:
		a, err := ecdsaAlgorithm(pub.Curve)
		if err != nil {
			return err
		}
		algs = []string{a}
	case ed25519.PublicKey:
		algs = []string{"EdDSA"}
	default:
		// Private keys are refused before; this is oct, X25519 and the rest.
		return fmt.Errorf("unsupported key type %s", key.KeyType())
	}
	if alg != "" && !slices.Contains(algs, alg) {
		return fmt.Errorf("alg %q does not fit a %s key", alg, key.KeyType())
	}
	return nil
}

// checkKeyRedirect holds a redirect of a JWKS fetch to more than the URL
// rule: plain http is taken for a loopback URL someone configured, never
// reached from https by a redirect (which keeps plain-http services such
// as a cloud metadata service out of reach), and a fetch that started off
// this machine is not redirected to a host that names it (a loopback,
// link-local or unspecified address, or a localhost name), whatever a
// redirect on the issuer's host says. The host is judged as written: a
// DNS name that resolves to this machine is not caught here.
func checkKeyRedirect(from, to *url.URL) error {
	if from.Scheme == "https" && to.Scheme != "https" {
		return errors.New("redirect from https to plain http refused")
	}
	if !isLocalHost(from.Hostname()) && isLocalHost(to.Hostname()) {
		return fmt.Errorf("redirect to %s refused: the JWKS URL is not on this machine", to.Hostname())
	}
	return nil
}

// isLocalHost says whether host names this machine or its link: a
// loopback, link-local or unspecified address, or localhost.
func isLocalHost(host string) bool {
	if isLoopbackHost(host) || strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLinkLocalUnicast() || ip.IsUnspecified())
}
