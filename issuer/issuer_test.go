package issuer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/engine"
	"github.com/guestgate/guestgate/state"
	"github.com/guestgate/guestgate/strictjson"
	"github.com/guestgate/guestgate/tokens"
)

const (
	adminSecret     = "dev-admin-secret-0123456789abcdefghijklmnop"
	launchpadSecret = "dev-launchpad-secret-0123456789abcdefghijkl"
	guestSecretA    = "WI2+t/87XWLI5d3MBQ7Md2/2bQParLnpLtcu6mu1xh0="
	guestSecretB    = "q6tKS94caaVzr_MHsuU0tzg9sckMxXpgCIVziCbFmk4"
	guestIss        = "partner-app"
)

// configDoc is a whole guestgate config with the development keys; %s are
// the secrets directory and the issuer section's extra keys.
const configDoc = `
tokens:
  issuers:
    - {name: guests, kind: guest, issuer: partner-app, secret_file: %[1]s/guest.b64}
minting:
  anonymous_email_domain: test.invalid
  xbs_anonymous: {issuer: https://xbs.test.invalid, audience: widget-client, key_files: [../testdata/dev/keys/xbs-dev-1.pem]}
  secure_anonymous: {issuer: https://sat.test.invalid, audience: launchpads, key_files: [../testdata/dev/keys/sat-dev-1.pem, ../testdata/dev/keys/sat-dev-0.pem]}
  access: {issuer: https://access.test.invalid, audience: api, key_files: [../testdata/dev/keys/access-dev-1.pem]}
issuer:
  enabled: true
  customers:
    - id: acme
      orgs:
        - {id: acme-eu, accounts: [acct-1, acct-2]}
    - id: globex
      orgs:
        - {id: globex-org, accounts: [acct-9]}
  integrations:
    - {client_id: acme-admin, secret_file: %[1]s/admin.secret, role: administrator, scope: "org:acme-eu"}
    - {client_id: acme-launchpad, secret_file: %[1]s/launchpad.secret, role: launchpad_user, scope: "account:acct-1"}
  providers:
    - {id: prov-1, account: acct-1, scope: launchpads/lp-1, duration: 30m, description: the lobby}
    - {id: prov-2, account: acct-2, scope: launchpads/lp-2}
    - {id: prov-9, account: acct-9, scope: launchpads/lp-9}
%[2]s`

// clock is the fixture's time, read by the issuer, the signer and the
// verifier alike: a request signed "now" is signed at the instant the
// issuer checks it, whatever the wall clock's second did in between, and a
// test moves time only by Advance.
type clock struct{ ns atomic.Int64 }

// clockStart is where every fixture's clock starts: a whole second, so
// token lifetimes come out exact.
var clockStart = time.Date(2030, time.January, 2, 3, 4, 5, 0, time.UTC)

func newClock() *clock {
	c := &clock{}
	c.ns.Store(clockStart.UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// fixture is an issuer on a real loopback HTTP server, minting with the
// development keys, reading a real engine's registry.
type fixture struct {
	t      testing.TB
	clock  *clock
	srv    *httptest.Server
	is     *Issuer
	eng    *engine.Engine
	cfg    *config.Config
	signer *tokens.Signer
	ver    *tokens.Verifier
	dir    string // secrets
	policy string // policy directory
	store  state.Store
}

func newFixture(t testing.TB, extra string) *fixture {
	t.Helper()
	f := &fixture{t: t, clock: newClock(), dir: t.TempDir(), policy: t.TempDir()}
	f.writeSecret("guest.b64", guestSecretA)
	f.writeSecret("admin.secret", adminSecret)
	f.writeSecret("launchpad.secret", launchpadSecret)
	// The policy's own registry, loaded by a real engine.
	for _, name := range []string{"widgets.json", "channels.json"} {
		data, err := os.ReadFile(filepath.Join("..", "policies", "registry", name))
		if err != nil {
			t.Fatal(err)
		}
		f.writePolicy(filepath.Join("registry", name), string(data))
	}
	f.writePolicy("authz.rego", "package guestgate.authz\n\ndecision := false\n")
	eng, err := engine.New(engine.Options{Dir: f.policy, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f.eng = eng
	if !strings.Contains(extra, "rate_limits") {
		// Tables send many requests from one address in a moment.
		extra += "  rate_limits: {per_address: {per_second: 1000, burst: 1000}, per_client: {per_second: 1000, burst: 1000}}\n"
	}
	f.load(extra)
	f.store = openStore(t, f.clock.Now)
	f.is, err = New(f.settings(), Options{State: f.store, Registry: eng, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	f.is.Register(mux)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) writeSecret(name, v string) {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, name), []byte(v+"\n"), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) writePolicy(name, v string) {
	f.t.Helper()
	p := filepath.Join(f.policy, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

// load parses the config and builds its signer and verifier, as the
// sidecar does.
func (f *fixture) load(extra string) {
	f.t.Helper()
	cfg, err := config.Parse(fmt.Appendf(nil, configDoc, f.dir, extra), ".")
	if err != nil {
		f.t.Fatal(err)
	}
	sc := tokens.SignerConfig{AnonymousEmailDomain: cfg.Minting.AnonymousEmailDomain, Now: f.clock.Now}
	for _, k := range []struct {
		in  config.MintedKind
		out *tokens.MintedKind
	}{{cfg.Minting.SAT, &sc.SAT}, {cfg.Minting.Access, &sc.Access}, {cfg.Minting.XBS, &sc.XBS}} {
		*k.out = tokens.MintedKind{Issuer: k.in.Issuer, Audience: k.in.Audience}
		for _, file := range k.in.KeyFiles {
			sk, err := tokens.LoadSigningKey(file)
			if err != nil {
				f.t.Fatal(err)
			}
			k.out.Keys = append(k.out.Keys, sk)
		}
	}
	signer, err := tokens.NewSigner(sc)
	if err != nil {
		f.t.Fatal(err)
	}
	ver, err := tokens.New(context.Background(), tokens.Config{Issuers: []tokens.Issuer{
		{Name: "guests", Kind: tokens.KindGuest, Issuer: guestIss, GuestSecret: cfg.Tokens.Issuers[0].Secret},
		{Name: "sat", Kind: tokens.KindSecureAnonymous, Issuer: sc.SAT.Issuer, Audiences: []string{sc.SAT.Audience}, PublicKeys: signer.PublicKeys(tokens.KindSecureAnonymous)},
		{Name: "access", Kind: tokens.KindAccess, Issuer: sc.Access.Issuer, Audiences: []string{sc.Access.Audience}, PublicKeys: signer.PublicKeys(tokens.KindAccess)},
		{Name: "xbs", Kind: tokens.KindXBSAnonymous, Issuer: sc.XBS.Issuer, Audiences: []string{sc.XBS.Audience}, AssertsBindingClaims: true, PublicKeys: signer.PublicKeys(tokens.KindXBSAnonymous)},
	}, Now: f.clock.Now})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(ver.Close)
	f.cfg, f.signer, f.ver = cfg, signer, ver
}

func (f *fixture) settings() Settings {
	return Settings{Config: f.cfg.Issuer, Signer: f.signer, Verifier: f.ver}
}

// signed is a SAT API request's signed headers.
type signed struct {
	client, secret, nonce string
	at                    time.Time
}

func (s signed) headers() http.Header {
	ts := strconv.FormatInt(s.at.Unix(), 10)
	h := http.Header{}
	h.Set(HeaderClientID, s.client)
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, Sign([]byte(s.secret), ts, s.client, s.nonce))
	if s.nonce != "" {
		h.Set(HeaderNonce, s.nonce)
	}
	return h
}

// nonces makes every admin request's signature its own: without a nonce
// a client signs one request per second.
var nonces atomic.Uint64

// admin is a request of the administrator's integration, signed at the
// fixture's now.
func (f *fixture) admin() signed {
	return signed{client: "acme-admin", secret: adminSecret, at: f.clock.Now(), nonce: fmt.Sprint("t-", nonces.Add(1))}
}

// answer is a response, its body read.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) apiError() apiError {
	var e apiError
	_ = json.Unmarshal(a.body, &e)
	return e
}

func (f *fixture) do(method, path string, h http.Header, contentType, body string) answer {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: data}
}

func (f *fixture) sat(account, provider string, h http.Header, contentType, body string) answer {
	f.t.Helper()
	return f.do("POST", "/v1/accounts/"+account+"/secure-anonymous/"+provider+"/tokens", h, contentType, body)
}

// satToken reads the SAT API's answer, a JSON string, and verifies it.
func (f *fixture) satToken(a answer) *tokens.Token {
	f.t.Helper()
	if a.status != http.StatusOK || !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") {
		f.t.Fatalf("status %d %s: %s", a.status, a.header.Get("Content-Type"), a.body)
	}
	var raw string
	if err := json.Unmarshal(a.body, &raw); err != nil {
		f.t.Fatalf("the answer is not a JSON string: %s", a.body)
	}
	tok, err := f.ver.VerifyKind(context.Background(), raw, tokens.KindSecureAnonymous)
	if err != nil {
		f.t.Fatalf("the minted SAT does not verify: %v", err)
	}
	return tok
}

func TestSATMintsTheProvidersTokenForAnAdministratorOfTheAccount(t *testing.T) {
	f := newFixture(t, "")
	cases := []struct {
		name, contentType, body string
		check                   func(t *testing.T, c map[string]any)
	}{
		{"no body", "", "", func(t *testing.T, c map[string]any) {
			if _, ok := c["email"]; ok {
				t.Error("an email without one asked for")
			}
		}},
		{"json", "application/json", `{"first_name":"Ada","last_name":"Lovelace","email":"ada@example.com","metadata":{"ticket":42}}`, func(t *testing.T, c map[string]any) {
			if c["first_name"] != "Ada" || c["last_name"] != "Lovelace" || c["email"] != "ada@example.com" {
				t.Errorf("claims = %v", c)
			}
			if m, _ := c["metadata"].(map[string]any); fmt.Sprint(m["ticket"]) != "42" {
				t.Errorf("metadata = %v", c["metadata"])
			}
		}},
		// The body's object and metadata's levels fill strictjson.MaxDepth,
		// as the token's claims and metadata do: the verifier takes it.
		{"json with metadata at the depth bound", "application/json", `{"metadata":` + strings.Repeat(`{"a":`, strictjson.MaxDepth-2) + "{}" + strings.Repeat("}", strictjson.MaxDepth-1), func(t *testing.T, c map[string]any) {
			m, _ := c["metadata"].(map[string]any)
			for range strictjson.MaxDepth - 2 {
				m, _ = m["a"].(map[string]any)
			}
			if m == nil || len(m) != 0 {
				t.Errorf("metadata = %v", c["metadata"])
			}
		}},
		{"form with a generated address", "application/x-www-form-urlencoded", url.Values{"first_name": {"Grace"}, "email_domain": {"Example.COM"}}.Encode(), func(t *testing.T, c map[string]any) {
			e, _ := c["email"].(string)
			if c["first_name"] != "Grace" || !strings.HasPrefix(e, "anonymous-") || !strings.HasSuffix(e, "@example.com") {
				t.Errorf("claims = %v", c)
			}
		}},
	}
	subjects := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := f.satToken(f.sat("acct-1", "prov-1", f.admin().headers(), tc.contentType, tc.body))
			c := tok.Claims()
			if c["role"] != "launchpad_user" || c["scope"] != "launchpads/lp-1" || c["account_id"] != "acct-1" || c["provider_id"] != "prov-1" {
				t.Errorf("claims = %v", c)
			}
			// The provider's 30m duration, not the signer's default hour.
			if life := tok.ExpiresAt.Sub(f.clock.Now()); life != 30*time.Minute {
				t.Errorf("lifetime %s, want the provider's 30m", life)
			}
			if subjects[tok.Subject] {
				t.Errorf("subject %s reused: every token is a fresh anonymous person", tok.Subject)
			}
			subjects[tok.Subject] = true
			tc.check(t, c)
		})
	}
}

func TestSATRefusals(t *testing.T) {
	f := newFixture(t, "")
	stale := f.admin()
	stale.at = f.clock.Now().Add(-config.SignatureWindow - time.Minute)
	future := f.admin()
	future.at = f.clock.Now().Add(config.SignatureWindow + time.Minute)
	wrongSecret := f.admin()
	wrongSecret.secret = launchpadSecret
	unknown := signed{client: "nobody", secret: adminSecret, at: f.clock.Now()}
	launchpad := signed{client: "acme-launchpad", secret: launchpadSecret, at: f.clock.Now()}
	noSig := f.admin().headers()
	noSig.Del(HeaderSignature)
	badHex := f.admin().headers()
	badHex.Set(HeaderSignature, "zz"+badHex.Get(HeaderSignature)[2:])
	badTS := f.admin().headers()
	badTS.Set(HeaderTimestamp, "-1")
	twice := f.admin().headers()
	twice.Add(HeaderClientID, "acme-admin")
	// A nonce sent, but not part of what was signed.
	unsignedNonce := signed{client: "acme-admin", secret: adminSecret, at: f.clock.Now()}.headers()
	unsignedNonce.Set(HeaderNonce, "n-1")

	cases := []struct {
		name              string
		account, provider string
		h                 http.Header
		contentType, body string
		status            int
		code, field       string
	}{
		{"wrong signature", "acct-1", "prov-1", wrongSecret.headers(), "", "", 401, "signature_invalid", ""},
		{"unknown client", "acct-1", "prov-1", unknown.headers(), "", "", 401, "signature_invalid", ""},
		{"stale timestamp", "acct-1", "prov-1", stale.headers(), "", "", 401, "timestamp_out_of_window", ""},
		{"future timestamp", "acct-1", "prov-1", future.headers(), "", "", 401, "timestamp_out_of_window", ""},
		{"no signature", "acct-1", "prov-1", noSig, "", "", 401, "signature_missing", ""},
		{"signature not hex", "acct-1", "prov-1", badHex, "", "", 401, "signature_invalid", ""},
		{"timestamp not seconds", "acct-1", "prov-1", badTS, "", "", 401, "timestamp_invalid", ""},
		{"header sent twice", "acct-1", "prov-1", twice, "", "", 401, "signature_invalid", ""},
		{"nonce not signed", "acct-1", "prov-1", unsignedNonce, "", "", 401, "signature_invalid", ""},
		{"launchpad-user credential", "acct-1", "prov-1", launchpad.headers(), "", "", 403, "role_not_administrator", ""},
		{"account outside the scope", "acct-9", "prov-9", f.admin().headers(), "", "", 403, "account_out_of_scope", ""},
		{"provider of another account", "acct-1", "prov-2", f.admin().headers(), "", "", 403, "provider_not_in_account", ""},
		{"unknown provider", "acct-1", "prov-x", f.admin().headers(), "", "", 404, "provider_unknown", ""},
		{"unknown json field", "acct-1", "prov-1", f.admin().headers(), "application/json", `{"first_name":"a","role":"administrator"}`, 400, "field_invalid", "role"},
		{"unknown form field", "acct-1", "prov-1", f.admin().headers(), "application/x-www-form-urlencoded", "scope=launchpads/x", 400, "field_invalid", "scope"},
		{"bad email", "acct-1", "prov-1", f.admin().headers(), "application/json", `{"email":"Ada <ada@example.com>"}`, 400, "field_invalid", "email"},
		{"email without domain", "acct-1", "prov-1", f.admin().headers(), "application/json", `{"email":"ada@"}`, 400, "field_invalid", "email"},
		{"bad email domain", "acct-1", "prov-1", f.admin().headers(), "application/x-www-form-urlencoded", "email_domain=exa%20mple.com", 400, "field_invalid", "email_domain"},
		{"email outside its domain", "acct-1", "prov-1", f.admin().headers(), "application/json", `{"email":"ada@example.com","email_domain":"example.org"}`, 400, "field_invalid", "email"},
		{"name with a control character", "acct-1", "prov-1", f.admin().headers(), "application/json", `{"last_name":"a\u0000b"}`, 400, "field_invalid", "last_name"},
		{"metadata not an object", "acct-1", "prov-1", f.admin().headers(), "application/json", `{"metadata":[1]}`, 400, "field_invalid", "metadata"},
		{"json field twice", "acct-1", "prov-1", f.admin().headers(), "application/json", `{"email":"a@example.com","email":"b@example.com"}`, 400, "field_invalid", "body"},
		{"json after the object", "acct-1", "prov-1", f.admin().headers(), "application/json", `{"email":"a@example.com"} {}`, 400, "field_invalid", "body"},
		{"json not an object", "acct-1", "prov-1", f.admin().headers(), "application/json", `["email"]`, 400, "field_invalid", "body"},
		{"json first_name not UTF-8", "acct-1", "prov-1", f.admin().headers(), "application/json", "{\"first_name\":\"Ad\xffa\"}", 400, "field_invalid", "first_name"},
		{"json last_name overlong", "acct-1", "prov-1", f.admin().headers(), "application/json", "{\"first_name\":\"Ada\",\"last_name\":\"L\xc0\xafx\"}", 400, "field_invalid", "last_name"},
		{"json metadata not UTF-8", "acct-1", "prov-1", f.admin().headers(), "application/json", "{\"metadata\":{\"k\":\"\xed\xa0\x80\"}}", 400, "field_invalid", "metadata"},
		{"json field name not UTF-8", "acct-1", "prov-1", f.admin().headers(), "application/json", "{\"first\xff\":\"Ada\"}", 400, "field_invalid", "body"},
		{"form first_name not UTF-8 once decoded", "acct-1", "prov-1", f.admin().headers(), "application/x-www-form-urlencoded", "first_name=Ad%C0%AFa", 400, "field_invalid", "first_name"},
		{"form first_name not UTF-8", "acct-1", "prov-1", f.admin().headers(), "application/x-www-form-urlencoded", "first_name=Ad\xffa", 400, "field_invalid", "first_name"},
		{"metadata larger once encoded", "acct-1", "prov-1", f.admin().headers(), "application/json", `{"metadata":{"k":"` + strings.Repeat("<", 1500) + `"}}`, 400, "field_invalid", "metadata"},
		{"json metadata member twice", "acct-1", "prov-1", f.admin().headers(), "application/json", `{"metadata":{"a":1,"a":2}}`, 400, "field_invalid", "body"},
		{"json metadata member twice deep inside", "acct-1", "prov-1", f.admin().headers(), "application/json", `{"metadata":{"a":[{"b":1,"b":1}]}}`, 400, "field_invalid", "body"},
		{"json metadata nested too deep", "acct-1", "prov-1", f.admin().headers(), "application/json", `{"metadata":` + strings.Repeat(`{"a":`, strictjson.MaxDepth) + "1" + strings.Repeat("}", strictjson.MaxDepth+1), 400, "field_invalid", "body"},
		{"form metadata member twice", "acct-1", "prov-1", f.admin().headers(), "application/x-www-form-urlencoded", url.Values{"metadata": {`{"a":1,"a":2}`}}.Encode(), 400, "field_invalid", "metadata"},
		{"form metadata not JSON", "acct-1", "prov-1", f.admin().headers(), "application/x-www-form-urlencoded", url.Values{"metadata": {`{"a":1} {}`}}.Encode(), 400, "field_invalid", "metadata"},
		{"form field twice", "acct-1", "prov-1", f.admin().headers(), "application/x-www-form-urlencoded", "first_name=a&first_name=b", 400, "field_invalid", "first_name"},
		{"oversize body", "acct-1", "prov-1", f.admin().headers(), "application/json", `{"first_name":"` + strings.Repeat("a", 17<<10) + `"}`, 413, "body_too_large", "body"},
		{"unsupported media type", "acct-1", "prov-1", f.admin().headers(), "text/plain", "first_name=a", 415, "unsupported_media_type", "Content-Type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := f.sat(tc.account, tc.provider, tc.h, tc.contentType, tc.body)
			e := a.apiError()
			if a.status != tc.status || e.Error != tc.code || e.Field != tc.field {
				t.Fatalf("got %d %+v, want %d %s field %q", a.status, e, tc.status, tc.code, tc.field)
			}
			if strings.Contains(string(a.body), adminSecret) || strings.Contains(string(a.body), "eyJ") {
				t.Fatal("a refusal carries a secret or a token")
			}
		})
	}
}

func TestSATSignatureIsSpentOnceEvenReencoded(t *testing.T) {
	f := newFixture(t, "")
	withoutNonce := f.admin()
	withoutNonce.nonce = ""
	for name, s := range map[string]signed{"without nonce": withoutNonce, "with nonce": f.admin()} {
		t.Run(name, func(t *testing.T) {
			h := s.headers()
			f.satToken(f.sat("acct-1", "prov-1", h, "", ""))
			// A config reload keeps the memory: it never makes a spent
			// signature usable again.
			if err := f.is.Update(f.settings()); err != nil {
				t.Fatal(err)
			}
			for _, sig := range []string{h.Get(HeaderSignature), strings.ToUpper(h.Get(HeaderSignature))} {
				again := h.Clone()
				again.Set(HeaderSignature, sig)
				a := f.sat("acct-1", "prov-1", again, "", "")
				if e := a.apiError(); a.status != 401 || e.Error != "signature_replayed" {
					t.Fatalf("replay (%s) answered %d %+v", sig[:4], a.status, e)
				}
			}
		})
	}
}

func TestSATNonceAllowsManyMintsPerSecondWithReplayProtection(t *testing.T) {
	f := newFixture(t, "")
	at := f.clock.Now()
	for i := range 5 {
		s := signed{client: "acme-admin", secret: adminSecret, at: at, nonce: fmt.Sprintf("n-%d", i)}
		f.satToken(f.sat("acct-2", "prov-2", s.headers(), "", ""))
	}
	s := signed{client: "acme-admin", secret: adminSecret, at: at, nonce: "n-3"}
	if a := f.sat("acct-2", "prov-2", s.headers(), "", ""); a.status != 401 || a.apiError().Error != "signature_replayed" {
		t.Fatalf("a nonce used twice answered %d %s", a.status, a.body)
	}
	bad := signed{client: "acme-admin", secret: adminSecret, at: at, nonce: "n 4"}
	if a := f.sat("acct-2", "prov-2", bad.headers(), "", ""); a.status != 401 || a.apiError().Error != "nonce_invalid" {
		t.Fatalf("a nonce with a space answered %d %s", a.status, a.body)
	}
}

func TestRateLimitsAnswer429WithRetryAfter(t *testing.T) {
	cases := []struct {
		name, extra string
		request     func(f *fixture, i int) answer
	}{
		{"per address", "  rate_limits: {per_address: {per_second: 0.01, burst: 2}}\n", func(f *fixture, i int) answer {
			return f.do("POST", "/v1/anonymous/public-chats/public-lobby/token", nil, "", "")
		}},
		{"per client", "  rate_limits: {per_client: {per_second: 0.01, burst: 2}}\n", func(f *fixture, i int) answer {
			s := f.admin()
			s.nonce = fmt.Sprint("n", i)
			return f.sat("acct-1", "prov-1", s.headers(), "", "")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.extra)
			for i := range 2 {
				if a := tc.request(f, i); a.status != 200 {
					t.Fatalf("request %d within the burst: %d %s", i, a.status, a.body)
				}
			}
			a := tc.request(f, 2)
			if a.status != http.StatusTooManyRequests || a.apiError().Error != "rate_limited" {
				t.Fatalf("over the limit: %d %s", a.status, a.body)
			}
			if ra, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || ra != 100 {
				t.Fatalf("Retry-After %q: want the seconds until a token is back (100 at 0.01/s, the clock standing still)", a.header.Get("Retry-After"))
			}
		})
	}
}

func TestXForwardedForCountsOnlyFromTrustedProxies(t *testing.T) {
	cases := []struct {
		name, extra string
		sameBucket  bool // do requests with different X-Forwarded-For share a bucket?
	}{
		{"untrusted peer", "  rate_limits: {per_address: {per_second: 0.01, burst: 1}}\n", true},
		{"trusted proxy", "  trusted_proxies: [127.0.0.0/8]\n  rate_limits: {per_address: {per_second: 0.01, burst: 1}}\n", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.extra)
			post := func(xff string) int {
				return f.do("POST", "/v1/anonymous/public-chats/public-lobby/token", http.Header{"X-Forwarded-For": {xff}}, "", "").status
			}
			if s := post("203.0.113.7"); s != 200 {
				t.Fatalf("first request: %d", s)
			}
			// A client forging the left of the chain gains nothing: the
			// right-most untrusted address counts.
			s := post("198.51.100.1, 203.0.113.8")
			if tc.sameBucket && s != http.StatusTooManyRequests {
				t.Fatalf("an untrusted peer's X-Forwarded-For picked a fresh bucket: %d", s)
			}
			if !tc.sameBucket && s != 200 {
				t.Fatalf("a trusted proxy's client did not get its own bucket: %d", s)
			}
			if !tc.sameBucket {
				if s := post("198.51.100.1, 203.0.113.7"); s != http.StatusTooManyRequests {
					t.Fatalf("the same client behind the proxy was not limited: %d", s)
				}
			}
		})
	}
}

// mintGuest is a partner's guest token that expires ttl after the
// fixture's now.
func (f *fixture) mintGuest(secretB64, sub, name string, ttl time.Duration) string {
	f.t.Helper()
	secret, err := tokens.DecodeGuestSecret(secretB64)
	if err != nil {
		f.t.Fatal(err)
	}
	tok, err := tokens.MintGuest(secret, guestIss, sub, name, f.clock.Now().Add(ttl))
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

func (f *fixture) login(tok string) (answer, loginAnswer) {
	f.t.Helper()
	a := f.do("POST", "/v1/jwt/login", http.Header{"Authorization": {"Bearer " + tok}}, "", "")
	var la loginAnswer
	if a.status == 200 {
		if err := json.Unmarshal(a.body, &la); err != nil {
			f.t.Fatal(err)
		}
	}
	return a, la
}

func TestGuestLoginGivesA6HourAccessTokenWithTheLatestName(t *testing.T) {
	f := newFixture(t, "")
	// A guest token of 5 minutes still gets 6 hours.
	a, la := f.login(f.mintGuest(guestSecretA, "guest-42", "Ada", 5*time.Minute))
	if a.status != 200 {
		t.Fatalf("login: %d %s", a.status, a.body)
	}
	if n, err := strconv.Atoi(la.ExpiresIn); err != nil || n != 21600 {
		t.Fatalf("expiresIn = %q, want 21600 (6 h, the clock standing still)", la.ExpiresIn)
	}
	var fields map[string]any
	_ = json.Unmarshal(a.body, &fields)
	if len(fields) != 2 {
		t.Fatalf("answer %s: want token and expiresIn only (no refresh token)", a.body)
	}
	tok, err := f.ver.VerifyKind(context.Background(), la.Token, tokens.KindAccess)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Subject != tokens.GuestPersonID(guestIss, "guest-42") || tok.Name != "Ada" {
		t.Fatalf("access token: sub %s name %q", tok.Subject, tok.Name)
	}
	_, la2 := f.login(f.mintGuest(guestSecretA, "guest-42", "Ada L.", time.Hour))
	tok2, err := f.ver.VerifyKind(context.Background(), la2.Token, tokens.KindAccess)
	if err != nil || tok2.Subject != tok.Subject || tok2.Name != "Ada L." {
		t.Fatalf("re-login: %v sub %s name %q", err, tok2.Subject, tok2.Name)
	}
}

func TestGuestLoginRefusals(t *testing.T) {
	f := newFixture(t, "")
	_, la := f.login(f.mintGuest(guestSecretA, "guest-1", "", time.Hour))
	cases := []struct {
		name, auth, code string
	}{
		{"no token", "", "missing_token"},
		{"basic scheme", "Basic Z3Vlc3Q6eA==", "missing_token"},
		{"an access token cannot log in", "Bearer " + la.Token, "invalid_token"},
		{"expired guest token", "Bearer " + f.mintGuest(guestSecretA, "guest-1", "", -time.Hour), "invalid_token"},
		{"another issuer's secret", "Bearer " + f.mintGuest(guestSecretB, "guest-1", "", time.Hour), "invalid_token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.auth != "" {
				h.Set("Authorization", tc.auth)
			}
			a := f.do("POST", "/v1/jwt/login", h, "", "")
			if a.status != 401 || a.apiError().Error != tc.code || a.header.Get("WWW-Authenticate") == "" {
				t.Fatalf("got %d %s", a.status, a.body)
			}
		})
	}
}

// TestGuestLoginAnswersAClientsBadInputWithA4xx: whatever a partner puts
// in a guest token's name and subject (every control character, bytes
// that are not UTF-8, text too long to carry), the login exchange answers
// 200 or a 4xx naming the claim at fault, never a 5xx, and writes no ERROR
// line: a client's bad input is not the issuer's failure. A name with CR
// or LF was 500 mint_failed.
func TestGuestLoginAnswersAClientsBadInputWithA4xx(t *testing.T) {
	f := newFixture(t, "")
	logs := &logBuffer{}
	is, err := New(f.settings(), Options{State: f.store, Registry: f.eng, Logger: slog.New(slog.NewJSONHandler(logs, nil)), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	is.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.srv = srv

	names := []string{"Ada", "", "Ada\rX-Evil: 1", "Ada\n", "\r\n", "A\x00", "A\x7f", "A\u0085", "A\u2028", "A\u2029", "A\xffB", "A\xc0\xaf", strings.Repeat("é", 200)}
	for c := rune(0); c < 0x20; c++ {
		names = append(names, "Ada"+string(c)+"Lovelace")
	}
	subjects := []string{"guest-1", strings.Repeat("a", 256), strings.Repeat("a", 257), strings.Repeat("b", 2000)}
	for _, sub := range subjects {
		for _, name := range names {
			a, _ := f.login(f.mintGuest(guestSecretA, sub, name, time.Hour))
			e := a.apiError()
			switch {
			case a.status == 200:
			case a.status >= 400 && a.status < 500 && e.Error != "" && (a.status != 400 || e.Field != ""):
			default:
				t.Fatalf("name %q, sub of %d bytes: %d %s", name, len(sub), a.status, a.body)
			}
			if a.status == 400 && (e.Error != "claim_invalid" || e.Field != "name" && e.Field != "guest_sub") {
				t.Fatalf("name %q: %d %+v, want claim_invalid naming the claim", name, a.status, e)
			}
		}
	}
	if a, _ := f.login(f.mintGuest(guestSecretA, "guest-1", "Ada\r\nLovelace", time.Hour)); a.status != 400 || a.apiError().Field != "name" {
		t.Fatalf("a name with CR LF: %d %s, want 400 naming name", a.status, a.body)
	}
	if strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Fatalf("an ERROR line for a client's input:\n%s", logs)
	}
}

// TestGuestLoginTakesOnlySpacesAndTabsAroundTheToken: a guest token with a
// CR, LF or other white space before or after it is not trimmed into a
// token but refused as malformed; spaces and tabs are trimmed. (The HTTP
// server never passes CR or LF in a header; the handler is asked in
// process, where nothing stands in between.)
func TestGuestLoginTakesOnlySpacesAndTabsAroundTheToken(t *testing.T) {
	f := newFixture(t, "")
	mux := http.NewServeMux()
	f.is.Register(mux)
	tok := f.mintGuest(guestSecretA, "guest-3", "Ada", time.Hour)
	for i, c := range []struct {
		value  string
		status int
	}{
		{"Bearer " + tok, 200},
		{"Bearer  " + tok + " \t", 200},
		{"Bearer " + tok + "\r\n", 401},
		{"Bearer " + tok + "\n", 401},
		{"Bearer " + tok + "\v", 401},
		{"Bearer \u00a0" + tok, 401},
		{"Bearer " + tok + "\x00", 401},
	} {
		req := httptest.NewRequest("POST", "/v1/jwt/login", nil)
		req.Header["Authorization"] = []string{c.value}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code != c.status || c.status == 401 && !strings.Contains(w.Body.String(), tokens.CodeMalformed) {
			t.Errorf("case %d: %d %s, want %d", i, w.Code, w.Body, c.status)
		}
	}
}

// logBuffer collects log lines from the server's goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestGuestLoginRefusesATokenOfARotatedSecret(t *testing.T) {
	f := newFixture(t, "")
	old := f.mintGuest(guestSecretA, "guest-7", "", time.Hour)
	_, la := f.login(old)
	// The partner regenerates its secret; the config reload builds a new
	// verifier and the issuer is updated with it.
	f.writeSecret("guest.b64", guestSecretB)
	f.load("")
	if err := f.is.Update(f.settings()); err != nil {
		t.Fatal(err)
	}
	if a, _ := f.login(old); a.status != 401 {
		t.Fatalf("a guest token of the old secret logged in: %d %s", a.status, a.body)
	}
	if _, err := f.ver.Verify(context.Background(), la.Token); tokens.CodeOf(err) != tokens.CodeRevoked {
		t.Fatalf("an access token of the old secret: %v, want revoked", err)
	}
	if a, _ := f.login(f.mintGuest(guestSecretB, "guest-7", "", time.Hour)); a.status != 200 {
		t.Fatalf("a guest token of the new secret: %d %s", a.status, a.body)
	}
}

func (f *fixture) session(path string) (answer, sessionAnswer, *tokens.Token) {
	f.t.Helper()
	a := f.do("POST", path, nil, "", "")
	var sa sessionAnswer
	if a.status != 200 {
		return a, sa, nil
	}
	if err := json.Unmarshal(a.body, &sa); err != nil {
		f.t.Fatal(err)
	}
	tok, err := f.ver.VerifyKind(context.Background(), sa.Token, tokens.KindXBSAnonymous)
	if err != nil {
		f.t.Fatalf("the minted session token does not verify: %v", err)
	}
	return a, sa, tok
}

func TestWidgetSessionsAreBoundToAFreshKiteChannel(t *testing.T) {
	f := newFixture(t, "")
	_, s1, tok := f.session("/v1/anonymous/widgets/W-DEMO/token")
	_, s2, _ := f.session("/v1/anonymous/widgets/W-DEMO/token")
	if tok == nil || !strings.HasPrefix(s1.ChannelID, "kite-") || s1.ChannelID == s2.ChannelID {
		t.Fatalf("channels %q and %q: want two fresh kite channels", s1.ChannelID, s2.ChannelID)
	}
	c := tok.Claims()
	if c["custom:entry"] != "kite" || c["custom:wid"] != "W-DEMO" || c["custom:channel_id"] != s1.ChannelID ||
		c["custom:authorization_type"] != "XBS_ANONYMOUS" || c["email"] != "anonymous-w-demo@anonymous.test.invalid" {
		t.Fatalf("claims = %v", c)
	}
}

func TestPublicChatSessionsAreBoundToTheChannel(t *testing.T) {
	f := newFixture(t, "")
	_, s, tok := f.session("/v1/anonymous/public-chats/public-lobby/token")
	if tok == nil || s.ChannelID != "public-lobby" || tok.Claims()["custom:entry"] != "public_link" || tok.Claims()["custom:channel_id"] != "public-lobby" {
		t.Fatalf("session %+v", s)
	}
	if _, ok := tok.Claims()["custom:wid"]; ok {
		t.Fatal("a link token carries a widget")
	}
}

func TestAnonymousSessionRefusalsFollowThePolicyData(t *testing.T) {
	f := newFixture(t, "")
	cases := []struct {
		path   string
		status int
		code   string
	}{
		{"/v1/anonymous/widgets/W-OFF/token", 403, "widget_disabled"},
		{"/v1/anonymous/widgets/W-NOPE/token", 404, "widget_unknown"},
		{"/v1/anonymous/public-chats/support-1/token", 403, "channel_not_public"},
		{"/v1/anonymous/public-chats/nowhere/token", 404, "channel_unknown"},
		{"/v1/anonymous/public-chats/a%20b/token", 404, "channel_unknown"},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			a, _, _ := f.session(tc.path)
			if a.status != tc.status || a.apiError().Error != tc.code || a.apiError().Message == "" {
				t.Fatalf("got %d %s", a.status, a.body)
			}
		})
	}
	// The same data the policy reads: a reload that turns W-OFF on and makes
	// support-1 private changes minting at once.
	f.writePolicy("registry/widgets.json", `{"widgets": {"W-OFF": {"anonymous_sessions": true, "channels": []}}}`)
	f.writePolicy("registry/channels.json", `{"channels": {"public-lobby": {"public": false}}}`)
	if err := f.eng.Reload(); err != nil {
		t.Fatal(err)
	}
	if a, _, _ := f.session("/v1/anonymous/widgets/W-OFF/token"); a.status != 200 {
		t.Fatalf("W-OFF after it was turned on: %d %s", a.status, a.body)
	}
	if a, _, _ := f.session("/v1/anonymous/public-chats/public-lobby/token"); a.status != 403 {
		t.Fatalf("public-lobby after it was made private: %d %s", a.status, a.body)
	}
}

func TestIssuerTurnedOffAnswers404ButPublishesKeys(t *testing.T) {
	f := newFixture(t, "")
	f.cfg.Issuer.Enabled = false
	if err := f.is.Update(f.settings()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/v1/jwt/login", "/v1/anonymous/widgets/W-DEMO/token", "/v1/accounts/acct-1/secure-anonymous/prov-1/tokens"} {
		if a := f.do("POST", p, f.admin().headers(), "", ""); a.status != 404 || a.apiError().Error != "issuer_disabled" {
			t.Errorf("%s: %d %s", p, a.status, a.body)
		}
	}
	if a := f.do("GET", "/.well-known/jwks.json", nil, "", ""); a.status != 200 {
		t.Fatalf("jwks: %d", a.status)
	}
}

func TestJWKSPublishesPublicKeysWithCachingHeaders(t *testing.T) {
	f := newFixture(t, "")
	a := f.do("GET", "/.well-known/jwks.json", nil, "", "")
	if a.status != 200 || !strings.Contains(a.header.Get("Cache-Control"), "max-age=") || a.header.Get("ETag") == "" {
		t.Fatalf("jwks: %d %v", a.status, a.header)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(a.body, &set); err != nil {
		t.Fatal(err)
	}
	kids := map[string]bool{}
	for _, k := range set.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if _, ok := k[private]; ok {
				t.Fatalf("key %v has private part %q", k["kid"], private)
			}
		}
		kids[fmt.Sprint(k["kid"])] = true
	}
	for _, kid := range []string{"sat-dev-1", "sat-dev-0", "access-dev-1", "xbs-dev-1"} {
		if !kids[kid] {
			t.Errorf("kid %s not published", kid)
		}
	}
	if a := f.do("GET", "/.well-known/jwks.json", http.Header{"If-None-Match": {a.header.Get("ETag")}}, "", ""); a.status != http.StatusNotModified {
		t.Fatalf("revalidation: %d", a.status)
	}
}

// A reload keeps a bucket whose bounds are the same (it stays spent) and
// starts a fresh one when its rate or burst changes.
func TestReloadKeepsRateLimitsWhoseBoundsDidNotChange(t *testing.T) {
	limits := func(burst, tracked int) string {
		return fmt.Sprintf("  rate_limits: {per_address: {per_second: 0.01, burst: %d}, per_client: {per_second: 1000, burst: 1000}, max_tracked: %d}\n", burst, tracked)
	}
	f := newFixture(t, limits(1, 100))
	chat := func() int { return f.do("POST", "/v1/anonymous/public-chats/public-lobby/token", nil, "", "").status }
	if s := chat(); s != http.StatusOK {
		t.Fatalf("first request: %d", s)
	}
	for _, step := range []struct {
		name  string
		extra string
		want  int
	}{
		{"the same bounds", limits(1, 100), http.StatusTooManyRequests},
		{"another max_tracked only", limits(1, 50), http.StatusTooManyRequests},
		{"another burst", limits(2, 50), http.StatusOK},
	} {
		f.load(step.extra)
		if err := f.is.Update(f.settings()); err != nil {
			t.Fatal(err)
		}
		if s := chat(); s != step.want {
			t.Fatalf("after a reload with %s: %d, want %d", step.name, s, step.want)
		}
	}
}
