package issuer

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// benchHandler is the fixture's mux without the network, so the figures
// are the issuer's own work (signature check, replay memory, limits,
// signing).
func benchHandler(b *testing.B) (*fixture, http.Handler) {
	f := newFixture(b, "  rate_limits: {per_address: {per_second: 1000000, burst: 1000000}, per_client: {per_second: 1000000, burst: 1000000}, replay_memory: 1048576}\n")
	mux := http.NewServeMux()
	f.is.Register(mux)
	return f, mux
}

func BenchmarkSATMint(b *testing.B) {
	f, h := benchHandler(b)
	// The fixture's clock stands still, so one timestamp stays in the
	// window however long the benchmark runs.
	ts := strconv.FormatInt(f.clock.Now().Unix(), 10)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		nonce := fmt.Sprint("b-", i)
		req := httptest.NewRequest("POST", "/v1/accounts/acct-1/secure-anonymous/prov-1/tokens", strings.NewReader(`{"first_name":"Ada"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(HeaderClientID, "acme-admin")
		req.Header.Set(HeaderTimestamp, ts)
		req.Header.Set(HeaderNonce, nonce)
		req.Header.Set(HeaderSignature, Sign([]byte(adminSecret), ts, "acme-admin", nonce))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}

func BenchmarkWidgetSession(b *testing.B) {
	_, h := benchHandler(b)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", "/v1/anonymous/widgets/W-DEMO/token", nil))
		if w.Code != 200 {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}
