package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// ksClock is a clock the key set tests move by hand.
type ksClock struct{ ns atomic.Int64 }

func newKSClock() *ksClock {
	c := &ksClock{}
	c.ns.Store(time.Unix(1_750_000_000, 0).UnixNano())
	return c
}
func (c *ksClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *ksClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func ksECKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ksJWK is raw (public or private) as a JWK with kid and, when not "",
// alg.
func ksJWK(t testing.TB, raw any, kid, alg string) jwk.Key {
	t.Helper()
	k, err := jwk.FromRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	if kid != "" {
		_ = k.Set(jwk.KeyIDKey, kid)
	}
	if alg != "" {
		_ = k.Set(jwk.AlgorithmKey, jwa.SignatureAlgorithm(alg))
	}
	return k
}

func ksJWKS(t testing.TB, keys ...jwk.Key) string {
	t.Helper()
	set := jwk.NewSet()
	for _, k := range keys {
		if err := set.AddKey(k); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ksServer serves a JWKS it can change, counts requests, and can be made
// to fail or to hold requests until released.
type ksServer struct {
	*httptest.Server
	hits   atomic.Int64
	body   atomic.Pointer[string]
	status atomic.Int64
	gate   atomic.Pointer[chan struct{}] // when set, requests wait for it to close
}

func newKSServer(t *testing.T, body string) *ksServer {
	t.Helper()
	s := &ksServer{}
	s.set(body)
	s.status.Store(http.StatusOK)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if g := s.gate.Load(); g != nil {
			select {
			case <-*g:
			case <-time.After(5 * time.Second): // a safety bound: a test that never opens the gate fails, not hangs
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(s.status.Load()))
		w.Write([]byte(*s.body.Load()))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *ksServer) set(body string) { s.body.Store(&body) }

func (s *ksServer) keySet(t *testing.T, src KeySource, clock *ksClock, hooks KeyHooks) *KeySet {
	t.Helper()
	src.URL = s.URL + "/.well-known/jwks.json"
	if clock == nil {
		clock = newKSClock()
	}
	k, err := newKeySet(context.Background(), src, s.Client(), hooks, clock.Now)
	if err != nil {
		t.Fatalf("NewKeySet: %v", err)
	}
	t.Cleanup(k.Close)
	return k
}

// waitingIn counts the goroutines blocked (in a select or on a channel)
// inside fn, a method as runtime.Stack names it: how a test knows the
// goroutines it started are parked where it means them to be, without
// sleeping.
func waitingIn(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		if (strings.Contains(header, "[select") || strings.Contains(header, "[chan receive")) && strings.Contains(g, "tokens."+fn+"(") {
			count++
		}
	}
	return count
}

func ksWantCode(t *testing.T, err error, code string) {
	t.Helper()
	if CodeOf(err) != code {
		t.Fatalf("error %v, want %s", err, code)
	}
	var te *Error
	if code != "" && !errors.As(err, &te) {
		t.Fatalf("error %T is not an *Error", err)
	}
}

func TestKeySetFromFileAndInlineServesItsKeys(t *testing.T) {
	a, b := ksECKey(t), ksECKey(t)
	doc := ksJWKS(t, ksJWK(t, &a.PublicKey, "a", "ES256"), ksJWK(t, &b.PublicKey, "b", ""))
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]KeySource{"file": {File: path}, "inline": {Inline: doc}} {
		t.Run(name, func(t *testing.T) {
			ks, err := NewKeySet(context.Background(), src, nil, KeyHooks{})
			if err != nil {
				t.Fatal(err)
			}
			defer ks.Close()
			for _, kid := range []string{"a", "b"} {
				if k, err := ks.Key(context.Background(), kid); err != nil || k.KeyID() != kid {
					t.Fatalf("Key(%q) = %v, %v", kid, k, err)
				}
			}
			_, err = ks.Key(context.Background(), "c")
			ksWantCode(t, err, CodeUnknownKey)
			_, err = ks.Key(context.Background(), "")
			ksWantCode(t, err, CodeUnknownKey) // two keys: a token must name one
			if st := ks.Status(); !st.Ready || st.Keys != 2 {
				t.Fatalf("status %+v", st)
			}
		})
	}
}

func TestKeySetOfOneKeyServesATokenWithoutKID(t *testing.T) {
	a := ksECKey(t)
	ks, err := NewKeySet(context.Background(), KeySource{Inline: ksJWKS(t, ksJWK(t, &a.PublicKey, "", "ES256"))}, nil, KeyHooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	if _, err := ks.Key(context.Background(), ""); err != nil {
		t.Fatalf("Key(\"\"): %v", err)
	}
	_, err = ks.Key(context.Background(), "x")
	ksWantCode(t, err, CodeUnknownKey)
}

func TestKeySetLeavesOutEncryptionKeys(t *testing.T) {
	a, b := ksECKey(t), ksECKey(t)
	enc := ksJWK(t, &b.PublicKey, "enc", "")
	_ = enc.Set(jwk.KeyUsageKey, "enc")
	// As Keycloak publishes its encryption key: an alg and no use.
	oaep := `{"kty":"EC","crv":"P-256","kid":"oaep","alg":"ECDH-ES","x":"` + jwkMember(t, enc, "x") + `","y":"` + jwkMember(t, enc, "y") + `"}`
	doc := strings.Replace(ksJWKS(t, ksJWK(t, &a.PublicKey, "sig", "ES256"), enc), "]}", ","+oaep+"]}", 1)
	ks, err := NewKeySet(context.Background(), KeySource{Inline: doc}, nil, KeyHooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	for _, kid := range []string{"enc", "oaep"} {
		_, err = ks.Key(context.Background(), kid)
		ksWantCode(t, err, CodeUnknownKey)
	}
	if ks.Status().Keys != 1 {
		t.Fatalf("status %+v", ks.Status())
	}
}

func TestBadKeySetsAreRefused(t *testing.T) {
	a, b := ksECKey(t), ksECKey(t)
	short, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	privEC := ksJWKS(t, ksJWK(t, a, "a", "ES256"))
	var privD string // the private scalar, which must appear in no error
	{
		var m map[string][]map[string]any
		_ = json.Unmarshal([]byte(privEC), &m)
		privD = m["keys"][0]["d"].(string)
	}
	oct, _ := jwk.FromRaw(make([]byte, 32))
	_ = oct.Set(jwk.KeyIDKey, "o")
	pubA := ksJWK(t, &a.PublicKey, "a", "ES256")
	tests := []struct {
		name, doc, want string
	}{
		{"private EC key", privEC, "private"},
		{"public key with a stray private member", `{"keys":[{"kty":"EC","crv":"P-256","kid":"a","x":"` + jwkMember(t, pubA, "x") + `","y":"` + jwkMember(t, pubA, "y") + `","p":"AQAB"}]}`, "private"},
		{"symmetric key", ksJWKS(t, oct), "private or symmetric"},
		{"duplicate kid", ksJWKS(t, pubA, ksJWK(t, &b.PublicKey, "a", "ES256")), "duplicate kid"},
		{"no keys", `{"keys":[]}`, "no signature keys"},
		{"no keys member", `{}`, "no signature keys"},
		{"only an encryption key", `{"keys":[{"kty":"EC","crv":"P-256","use":"enc","x":"` + jwkMember(t, pubA, "x") + `","y":"` + jwkMember(t, pubA, "y") + `"}]}`, "no signature keys"},
		{"not JSON", `{"keys":[`, "not JSON"},
		{"data after the document", ksJWKS(t, pubA) + `{}`, "after the document"},
		{"duplicate member", `{"keys":[],"keys":[]}`, "duplicate member"},
		{"keys not an array", `{"keys":{}}`, "not a JWKS"},
		{"a key not an object", `{"keys":[1]}`, "not a JSON object"},
		{"RSA key under 2048 bits", ksJWKS(t, ksJWK(t, &short.PublicKey, "r", "RS256")), "1024 bits"},
		{"alg that does not fit the key", ksJWKS(t, ksJWK(t, &a.PublicKey, "a", "RS256")), "does not fit"},
		{"HS256 on an EC key", ksJWKS(t, ksJWK(t, &a.PublicKey, "a", "HS256")), "does not fit"},
		{"X25519 key", `{"keys":[{"kty":"OKP","crv":"X25519","kid":"x","x":"hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"}]}`, "unsupported key type"},
		{"unknown kty", `{"keys":[{"kty":"XYZ","kid":"x"}]}`, "not a usable JWK"},
		{"several keys, one without kid", ksJWKS(t, pubA, ksJWK(t, &b.PublicKey, "", "ES256")), "without kid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks, err := NewKeySet(context.Background(), KeySource{Inline: tt.doc}, nil, KeyHooks{})
			if err == nil {
				ks.Close()
				t.Fatal("key set accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if strings.Contains(err.Error(), privD) {
				t.Error("the error holds private key material")
			}
		})
	}
}

func jwkMember(t testing.TB, k jwk.Key, name string) string {
	t.Helper()
	b, _ := json.Marshal(k)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m[name].(string)
}

func TestKeySourceMustNameOneSource(t *testing.T) {
	for name, src := range map[string]KeySource{
		"none":              {},
		"two":               {File: "x.json", Inline: "{}"},
		"negative MaxStale": {URL: "https://idp.example/jwks.json", MaxStale: -time.Second},
		"missing file":      {File: filepath.Join(t.TempDir(), "missing.json")},
	} {
		t.Run(name, func(t *testing.T) {
			if ks, err := NewKeySet(context.Background(), src, nil, KeyHooks{}); err == nil {
				ks.Close()
				t.Fatal("accepted")
			}
		})
	}
}

func TestKeySetURLMustBeHTTPS(t *testing.T) {
	refused := []string{
		"http://idp.example/jwks.json",
		"http://10.0.0.1/jwks.json",
		"ftp://127.0.0.1/jwks.json",
		"https://user:secret@idp.example/jwks.json",
		"https://idp.example/jwks.json#frag",
		"//idp.example/jwks.json",
		"jwks.json",
		"https:opaque",
	}
	for _, u := range refused {
		t.Run(u, func(t *testing.T) {
			ks, err := NewKeySet(context.Background(), KeySource{URL: u}, nil, KeyHooks{})
			if err == nil {
				ks.Close()
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("error %q holds the URL's password", err)
			}
		})
	}
	for _, u := range []string{
		"https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Abc/.well-known/jwks.json",
		"http://127.0.0.1:8080/jwks.json", "http://[::1]:8080/jwks.json", "http://localhost:8080/jwks.json",
	} {
		if err := checkKeyURL(u); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
}

func TestKeySetURLIsFetchedAtStart(t *testing.T) {
	a := ksECKey(t)
	srv := newKSServer(t, ksJWKS(t, ksJWK(t, &a.PublicKey, "a", "ES256")))
	var fetches, failures atomic.Int64
	ks := srv.keySet(t, KeySource{}, nil, KeyHooks{OnFetch: func(url string, err error) {
		fetches.Add(1)
		if err != nil {
			failures.Add(1)
		}
		if !strings.HasPrefix(url, srv.URL) {
			t.Errorf("OnFetch url %q", url)
		}
	}})
	if _, err := ks.Key(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	st := ks.Status()
	if !st.Ready || st.Keys != 1 || st.LastFetch.IsZero() || st.LastError != "" || !strings.HasPrefix(st.Source, srv.URL) {
		t.Fatalf("status %+v", st)
	}
	if srv.hits.Load() != 1 || fetches.Load() != 1 || failures.Load() != 0 {
		t.Fatalf("hits %d, fetches %d, failures %d", srv.hits.Load(), fetches.Load(), failures.Load())
	}
}

func TestKeySetURLFailingAtStartIsNotReadyUntilAFetchSucceeds(t *testing.T) {
	a := ksECKey(t)
	srv := newKSServer(t, "oops")
	srv.status.Store(http.StatusServiceUnavailable)
	clock := newKSClock()
	ks := srv.keySet(t, KeySource{MinRefetch: time.Minute}, clock, KeyHooks{})
	if st := ks.Status(); st.Ready || !strings.Contains(st.LastError, "503") {
		t.Fatalf("status %+v", st)
	}
	_, err := ks.Key(context.Background(), "a")
	ksWantCode(t, err, CodeKeysUnavailable)

	srv.status.Store(http.StatusOK)
	srv.set(ksJWKS(t, ksJWK(t, &a.PublicKey, "a", "ES256")))
	// Within MinRefetch of the failed start fetch: no new fetch yet.
	_, err = ks.Key(context.Background(), "a")
	ksWantCode(t, err, CodeKeysUnavailable)
	clock.Advance(time.Minute)
	if _, err := ks.Key(context.Background(), "a"); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if !ks.Status().Ready {
		t.Fatal("not ready after a good fetch")
	}
}

func TestKeySetBackgroundRefreshPicksUpRotation(t *testing.T) {
	a, b := ksECKey(t), ksECKey(t)
	srv := newKSServer(t, ksJWKS(t, ksJWK(t, &a.PublicKey, "a", "ES256")))
	ks := srv.keySet(t, KeySource{Refresh: 10 * time.Millisecond, MinRefetch: time.Hour}, newKSClock(), KeyHooks{})
	v0 := ks.Version()
	srv.set(ksJWKS(t, ksJWK(t, &b.PublicKey, "b", "ES256")))
	// Bounded polls for a state: the refresher runs on its own timer and
	// fetches over real loopback HTTP; nothing here measures time.
	deadline := time.Now().Add(5 * time.Second)
	for ks.Version() == v0 {
		if time.Now().After(deadline) {
			t.Fatal("the rotation was never picked up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The test clock never moves, so a miss could not have fetched: the
	// background refresh brought the new key.
	if _, err := ks.Key(context.Background(), "b"); err != nil {
		t.Fatalf("new key: %v", err)
	}
	_, err := ks.Key(context.Background(), "a")
	ksWantCode(t, err, CodeUnknownKey)
	// Refetching the same keys is not a change.
	v1 := ks.Version()
	for h := srv.hits.Load(); srv.hits.Load() < h+3; {
		if time.Now().After(deadline) {
			t.Fatal("no background refresh")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ks.Version() != v1 {
		t.Fatal("Version changed without a change of keys")
	}
}

func TestKeySetUnknownKIDRefetchIsRateBounded(t *testing.T) {
	a := ksECKey(t)
	srv := newKSServer(t, ksJWKS(t, ksJWK(t, &a.PublicKey, "a", "ES256")))
	clock := newKSClock()
	ks := srv.keySet(t, KeySource{MinRefetch: 10 * time.Second}, clock, KeyHooks{})
	ctx := context.Background()
	for range 50 {
		_, err := ks.Key(ctx, "made-up")
		ksWantCode(t, err, CodeUnknownKey)
	}
	if h := srv.hits.Load(); h != 1 {
		t.Fatalf("%d fetches within MinRefetch of the start fetch, want 1", h)
	}
	clock.Advance(10 * time.Second)
	for range 50 {
		_, _ = ks.Key(ctx, "made-up")
	}
	if h := srv.hits.Load(); h != 2 {
		t.Fatalf("%d fetches after one MinRefetch, want 2", h)
	}
	// A known kid never fetches.
	clock.Advance(time.Hour)
	for range 50 {
		if _, err := ks.Key(ctx, "a"); err != nil {
			t.Fatal(err)
		}
	}
	if h := srv.hits.Load(); h != 2 {
		t.Fatalf("known kid fetched: %d", h)
	}
}

func TestKeySetConcurrentMissesShareOneFetch(t *testing.T) {
	a, b := ksECKey(t), ksECKey(t)
	srv := newKSServer(t, ksJWKS(t, ksJWK(t, &a.PublicKey, "a", "ES256")))
	clock := newKSClock()
	ks := srv.keySet(t, KeySource{MinRefetch: time.Second}, clock, KeyHooks{})
	clock.Advance(time.Second)

	gate := make(chan struct{})
	srv.gate.Store(&gate)
	srv.set(ksJWKS(t, ksJWK(t, &a.PublicKey, "a", "ES256"), ksJWK(t, &b.PublicKey, "b", "ES256")))
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := ks.Key(context.Background(), "b")
			errs <- err
		})
	}
	// Bounded poll for a state: every miss is parked on the one fetch,
	// which is held at the gate (real loopback HTTP).
	deadline := time.Now().Add(5 * time.Second)
	for srv.hits.Load() < 2 || waitingIn("(*KeySet).refetchOnMiss") < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d fetches, %d misses waiting: want the refetch and %d", srv.hits.Load(), waitingIn("(*KeySet).refetchOnMiss"), n)
		}
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a waiting miss failed: %v", err)
		}
	}
	if h := srv.hits.Load(); h != 2 {
		t.Fatalf("%d fetches for %d concurrent misses, want one (plus the start fetch)", h-1, n)
	}
}

func TestKeySetKeepsLastKeysThenFailsClosedAfterMaxStale(t *testing.T) {
	a := ksECKey(t)
	good := ksJWKS(t, ksJWK(t, &a.PublicKey, "a", "ES256"))
	srv := newKSServer(t, good)
	clock := newKSClock()
	var failures atomic.Int64
	ks := srv.keySet(t, KeySource{MaxStale: time.Hour, MinRefetch: time.Minute}, clock,
		KeyHooks{OnFetch: func(_ string, err error) {
			if err != nil {
				failures.Add(1)
			}
		}})
	ctx := context.Background()
	v0 := ks.Version()

	srv.status.Store(http.StatusInternalServerError)
	clock.Advance(30 * time.Minute)
	_, err := ks.Key(ctx, "other") // a miss: the refetch fails
	ksWantCode(t, err, CodeUnknownKey)
	if failures.Load() != 1 {
		t.Fatalf("failures %d", failures.Load())
	}
	if _, err := ks.Key(ctx, "a"); err != nil {
		t.Fatalf("last good key within MaxStale: %v", err)
	}
	if st := ks.Status(); !st.Ready || !strings.Contains(st.LastError, "500") {
		t.Fatalf("status within MaxStale %+v", st)
	}
	if ks.Version() != v0 {
		t.Fatal("Version changed within MaxStale")
	}

	clock.Advance(31 * time.Minute)
	_, err = ks.Key(ctx, "a")
	ksWantCode(t, err, CodeKeysUnavailable)
	if ks.Status().Ready {
		t.Fatal("ready after MaxStale")
	}
	v1 := ks.Version()
	if v1 == v0 {
		t.Fatal("Version did not change when the keys went stale")
	}

	srv.status.Store(http.StatusOK)
	clock.Advance(time.Minute)
	if _, err := ks.Key(ctx, "a"); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if ks.Version() == v1 {
		t.Fatal("Version did not change when the keys came back")
	}
}

func TestKeySetRefusesBadResponses(t *testing.T) {
	a := ksECKey(t)
	private := ksJWKS(t, ksJWK(t, a, "a", "ES256"))
	privD := jwkMember(t, ksJWK(t, a, "a", "ES256"), "d")
	tests := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"oversize", http.StatusOK, `{"keys":[]}` + strings.Repeat(" ", MaxJWKSSize), "larger than"},
		{"bad JSON", http.StatusOK, `<html>not json</html>`, "not JSON"},
		{"private keys", http.StatusOK, private, "private"},
		{"empty set", http.StatusOK, `{"keys":[]}`, "no signature keys"},
		{"not found", http.StatusNotFound, `{"keys":[]}`, "404"},
		{"redirect", http.StatusFound, ``, "302"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newKSServer(t, tt.body)
			srv.status.Store(int64(tt.status))
			ks := srv.keySet(t, KeySource{}, nil, KeyHooks{})
			st := ks.Status()
			if st.Ready || !strings.Contains(st.LastError, tt.want) {
				t.Fatalf("status %+v, want an error saying %q", st, tt.want)
			}
			if strings.Contains(st.LastError, "html") || strings.Contains(st.LastError, privD) {
				t.Fatalf("the error quotes the body: %q", st.LastError)
			}
			_, err := ks.Key(context.Background(), "a")
			ksWantCode(t, err, CodeKeysUnavailable)
		})
	}
}

func TestKeySetDoesNotFollowARedirectToPlainHTTP(t *testing.T) {
	srv := httptest.NewServer(http.RedirectHandler("http://idp.example/jwks.json", http.StatusFound))
	defer srv.Close()
	ks, err := NewKeySet(context.Background(), KeySource{URL: srv.URL}, srv.Client(), KeyHooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	if st := ks.Status(); st.Ready || !strings.Contains(st.LastError, "must be https") {
		t.Fatalf("status %+v", st)
	}
}

// TestKeySetCloseStopsTheRefresh: Close returns once the refresher and any
// fetch in flight have ended; from then on nothing fetches, not even a miss
// past MinRefetch, and Key answers from the keys held. Fetches are counted
// where the key set makes them (OnFetch), not at the server, where a
// request cancelled by Close may still arrive late.
func TestKeySetCloseStopsTheRefresh(t *testing.T) {
	a := ksECKey(t)
	srv := newKSServer(t, ksJWKS(t, ksJWK(t, &a.PublicKey, "a", "ES256")))
	clock := newKSClock()
	var fetches, afterClose atomic.Int64
	var closed atomic.Bool
	ks := srv.keySet(t, KeySource{Refresh: time.Millisecond}, clock, KeyHooks{OnFetch: func(string, error) {
		fetches.Add(1)
		if closed.Load() {
			afterClose.Add(1)
		}
	}})
	// Bounded poll for a state: the refresher runs on its own timer and
	// fetches over real loopback HTTP.
	deadline := time.Now().Add(5 * time.Second)
	var refreshers int // waiting, this one among them
	for fetches.Load() < 3 || refreshers == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no background refresh")
		}
		time.Sleep(time.Millisecond)
		refreshers = waitingIn("(*KeySet).refresher")
	}
	ks.Close()
	closed.Store(true)
	if n := waitingIn("(*KeySet).refresher"); n != refreshers-1 {
		t.Fatalf("%d refreshers waiting after Close, %d before: Close did not stop this one", n, refreshers)
	}
	clock.Advance(time.Hour)
	if _, err := ks.Key(context.Background(), "made-up"); CodeOf(err) != CodeUnknownKey {
		t.Fatalf("a miss after Close: %v, want unknown_key", err)
	}
	if n := afterClose.Load(); n != 0 {
		t.Fatalf("%d fetches after Close", n)
	}
	ks.Close() // twice is fine
	if _, err := ks.Key(context.Background(), "a"); err != nil {
		t.Fatalf("keys held after Close: %v", err)
	}
}

func TestStaticKeySetRefusesPrivateKeys(t *testing.T) {
	a := ksECKey(t)
	set := jwk.NewSet()
	_ = set.AddKey(ksJWK(t, a, "a", "ES256"))
	if _, err := NewStaticKeySet(set); err == nil || !strings.Contains(err.Error(), "private") {
		t.Fatalf("private static set: %v", err)
	}
	if _, err := NewStaticKeySet(nil); err == nil {
		t.Fatal("nil set accepted")
	}
	pub := jwk.NewSet()
	_ = pub.AddKey(ksJWK(t, &a.PublicKey, "a", "ES256"))
	ks, err := NewStaticKeySet(pub)
	if err != nil {
		t.Fatal(err)
	}
	v := ks.Version()
	if _, err := ks.Key(context.Background(), "a"); err != nil || ks.Version() != v || ks.Status().Source != "static" {
		t.Fatalf("static set: %v, status %+v", err, ks.Status())
	}
}

func TestKeySetRetriesSoonAfterAFailedFetch(t *testing.T) {
	a := ksECKey(t)
	srv := newKSServer(t, ksJWKS(t, ksJWK(t, &a.PublicKey, "a", "ES256")))
	srv.status.Store(http.StatusBadGateway)
	// Refresh is an hour: only the retry after a failure can make it ready.
	ks := srv.keySet(t, KeySource{Refresh: time.Hour, MinRefetch: 5 * time.Millisecond}, nil, KeyHooks{})
	// Bounded polls for a state: the retries run on the refresher's own
	// timer and fetch over real loopback HTTP.
	deadline := time.Now().Add(5 * time.Second)
	for srv.hits.Load() < 3 { // the start fetch and two retries
		if time.Now().After(deadline) {
			t.Fatal("no retry")
		}
		time.Sleep(time.Millisecond)
	}
	srv.status.Store(http.StatusOK)
	for !ks.Status().Ready {
		if time.Now().After(deadline) {
			t.Fatal("never retried")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
