package issuer

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// FuzzSATRequest throws hostile headers and bodies at the SAT API: every
// answer is a JSON refusal with a known status or a minted token, never a
// panic, and a request that mints was signed with the right secret.
func FuzzSATRequest(f *testing.F) {
	fx := newFixture(f, "  rate_limits: {per_address: {per_second: 1000000, burst: 1000000}, per_client: {per_second: 1000000, burst: 1000000}, replay_memory: 1048576}\n")
	mux := http.NewServeMux()
	fx.is.Register(mux)
	seeds := []struct{ client, nonce, sig, ctype, body string }{
		{"acme-admin", "n1", "", "application/json", `{"first_name":"Ada","metadata":{"a":[1,2]}}`},
		{"acme-admin", "", "", "application/x-www-form-urlencoded", "email=a%40b.example&email_domain=b.example"},
		{"acme-admin", "n2", "00", "application/json", `{"email":"a@b"}`},
		{"nobody", "", "", "text/plain", "\x00\xff"},
		{"acme-admin", "n3", "", "application/json; charset=utf-8", `{"metadata":"{}"}`},
		{"acme-admin", "n 4", "", "application/json", `{"a":`},
	}
	for _, s := range seeds {
		f.Add(s.client, s.nonce, s.sig, s.ctype, s.body)
	}
	// The fixture's clock stands still, so one timestamp stays in the
	// window however long the fuzzing runs.
	ts := strconv.FormatInt(fx.clock.Now().Unix(), 10)
	f.Fuzz(func(t *testing.T, client, nonce, sig, ctype, body string) {
		signedRight := sig == ""
		if signedRight {
			sig = Sign([]byte(adminSecret), ts, client, nonce)
		}
		req := httptest.NewRequest("POST", "/v1/accounts/acct-1/secure-anonymous/prov-1/tokens", strings.NewReader(body))
		for k, v := range map[string]string{HeaderClientID: client, HeaderTimestamp: ts, HeaderSignature: sig, HeaderNonce: nonce, "Content-Type": ctype} {
			if v != "" && !strings.ContainsAny(v, "\r\n\x00") {
				req.Header.Set(k, v)
			}
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		switch w.Code {
		case 200:
			if !signedRight || client != "acme-admin" {
				t.Fatalf("minted for client %q with signature %q", client, sig)
			}
			var tok string
			if err := json.Unmarshal(w.Body.Bytes(), &tok); err != nil {
				t.Fatalf("answer %s", w.Body)
			}
		case 400, 401, 403, 404, 413, 415, 429:
			var e apiError
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%d answer %s", w.Code, w.Body)
			}
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	})
}
