package main

// The end-to-end harness: a real sidecar (gRPC, public and admin listeners
// on 127.0.0.1 port 0) serving a temporary copy of the development setup
// and of the shipped policies/, real tokens signed with the committed
// development keys and secrets, and the go-control-plane gRPC client.
// The copies let a test edit the registry data or rotate a secret and
// watch the running sidecar reload, without touching the repository.
//
// The sidecar runs on the wall clock, as in production (its wiring takes
// no clock). The tokens here are minted on the same clock with margins of
// an hour or more (valid for an hour, expired hours ago), never seconds,
// so no tick between a mint and its check changes an answer.

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/tokens"
	"github.com/guestgate/guestgate/wiring"
)

// The development setup's issuers, as testdata/dev/guestgate.yaml names them.
const (
	devXBSIssuer    = "https://cognito-idp.dev.guestgate.invalid/dev-pool"
	devXBSAudience  = "dev-widget-client"
	devGuestIssuer  = "dev-guest-issuer"
	devSATIssuer    = "https://guestgate.dev.invalid/sat"
	devAccessIssuer = "https://guestgate.dev.invalid/access"
)

// e2e is one running sidecar and what the tests mint tokens with.
type e2e struct {
	t         testing.TB
	dir       string // the temporary copy: dev/ (config, keys, secrets) and policies/
	cfgPath   string
	policyDir string
	s         *sidecar
	client    authv3.AuthorizationClient
	logs      *lineBuffer
	signer    *tokens.Signer // the development signer, now
	xbsKey    tokens.SigningKey
	satKey    tokens.SigningKey
	guestKey  []byte // the development guest secret, decoded
	nextID    atomic.Int64
	stop      context.CancelFunc // stops s
	done      chan error         // s's serve result
}

// startE2E copies the development setup and the shipped policies into a
// temporary directory (testsupport.CopyDevelopment, with edits made to
// the config) and serves them.
func startE2E(t testing.TB, edits map[string]string) *e2e {
	t.Helper()
	return startE2EWith(t, edits, nil)
}

// startE2EWith is startE2E with files (path relative to policies/ →
// content) added to the policy copy before the sidecar starts.
func startE2EWith(t testing.TB, edits, files map[string]string) *e2e {
	t.Helper()
	dir, cfgPath := testsupport.CopyDevelopment(t, edits)
	for rel, content := range files {
		writeFile(t, filepath.Join(dir, "policies", rel), content)
	}
	e := &e2e{t: t, dir: dir, cfgPath: cfgPath, policyDir: filepath.Join(dir, "policies"), logs: &lineBuffer{}}
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if e.signer, err = wiring.Signer(cfg); err != nil {
		t.Fatal(err)
	}
	if e.xbsKey, err = tokens.LoadSigningKey(cfg.Minting.XBS.KeyFiles[0]); err != nil {
		t.Fatal(err)
	}
	if e.satKey, err = tokens.LoadSigningKey(cfg.Minting.SAT.KeyFiles[0]); err != nil {
		t.Fatal(err)
	}
	e.guestKey = e.readGuestSecret()

	e.serve(cfg)
	return e
}

// serve runs cfg and points e at it.
func (e *e2e) serve(cfg *config.Config) {
	e.t.Helper()
	e.s, e.stop, e.done = runSidecar(e.t, cfg, e.logs)
	conn, err := grpc.NewClient(e.s.grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	e.client = authv3.NewAuthorizationClient(conn)
}

// restart stops the sidecar (serve returns, its state store closed) and
// serves the config file again, as a restarted guestgate would.
func (e *e2e) restart() {
	e.t.Helper()
	e.stop()
	err := <-e.done
	e.done <- err // runSidecar's cleanup reads it too
	if err != nil {
		e.t.Fatalf("serve: %v", err)
	}
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		e.t.Fatal(err)
	}
	e.serve(cfg)
}

// readGuestSecret decodes the guest issuer's secret file of the copy.
func (e *e2e) readGuestSecret() []byte {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, "dev", "secrets", "guest-dev.b64"))
	if err != nil {
		e.t.Fatal(err)
	}
	key, err := tokens.DecodeGuestSecret(strings.TrimSpace(string(b)))
	if err != nil {
		e.t.Fatal(err)
	}
	return key
}

// httpCall is the HTTP request Envoy asks about.
type httpCall struct {
	method, path string
	token        string            // sent as Authorization: Bearer
	headers      map[string]string // more request headers
	body         string            // sent as a JSON body (content-length set)
	noBody       bool              // content-length says a body exists, none was forwarded
}

// answer is what came back, with the decision log line of the request.
type answer struct {
	resp       *authv3.CheckResponse
	allowed    bool
	status     int
	headers    map[string]string // upstream headers on an allow, client headers on a deny
	removed    []string          // headers removed on the way upstream
	removedQ   []string          // query parameters removed on the way upstream
	reason     string            // the precise reason, from the decision log
	tokenError string
	kind       string
	subject    string
}

// check sends one CheckRequest as Envoy would and reads the decision log
// line it produced (matched by request id).
func (e *e2e) check(c httpCall) answer {
	e.t.Helper()
	id := fmt.Sprintf("e2e-%08x", e.nextID.Add(1))
	req := checkRequestWithID(c, id)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := e.client.Check(ctx, req)
	if err != nil {
		e.t.Fatalf("%s %s: Check: %v", c.method, c.path, err)
	}
	a := answer{resp: resp, headers: map[string]string{}}
	if ok := resp.GetOkResponse(); ok != nil {
		a.allowed, a.status = true, 200
		for _, h := range ok.GetHeaders() {
			a.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		a.removed, a.removedQ = ok.GetHeadersToRemove(), ok.GetQueryParametersToRemove()
	} else if d := resp.GetDeniedResponse(); d != nil {
		a.status = int(d.GetStatus().GetCode())
		for _, h := range d.GetHeaders() {
			a.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
	} else {
		e.t.Fatalf("%s %s: a CheckResponse without an HTTP answer: %v", c.method, c.path, resp)
	}
	line, ok := e.logs.decision(id)
	if !ok {
		e.t.Fatalf("%s %s: no decision log line for request %s", c.method, c.path, id)
	}
	a.reason, a.tokenError, a.kind, a.subject = line.Reason, line.TokenError, line.Kind, line.Subject
	return a
}

// checkRequestWithID is the CheckRequest Envoy sends for c, with request id id.
func checkRequestWithID(c httpCall, id string) *authv3.CheckRequest {
	headers := map[string]string{":method": c.method, ":path": c.path, ":authority": "chat.example.com", "x-request-id": id}
	if c.token != "" {
		headers["authorization"] = "Bearer " + c.token
	}
	if c.body != "" {
		headers["content-type"] = "application/json"
		headers["content-length"] = fmt.Sprint(len(c.body))
	}
	if c.noBody {
		headers["content-type"] = "application/json"
		headers["content-length"] = "42"
	}
	for k, v := range c.headers {
		headers[k] = v
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 50000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: c.method, Path: c.path, Host: "chat.example.com", Scheme: "https", Protocol: "HTTP/1.1",
			Headers: headers, Body: c.body,
		}},
	}}
	return req
}

// checkRequestFor is checkRequestWithID without an id of the test's.
func checkRequestFor(c httpCall) *authv3.CheckRequest { return checkRequestWithID(c, "") }

// decisionLine is the part of a decision log line the tests read.
type decisionLine struct {
	Msg        string `json:"msg"`
	RequestID  string `json:"request_id"`
	Allowed    bool   `json:"allowed"`
	Reason     string `json:"reason"`
	TokenError string `json:"token_error"`
	Kind       string `json:"kind"`
	Subject    string `json:"subject"`
}

// lineBuffer collects the sidecar's JSON log lines and finds decisions in
// them.
type lineBuffer struct{ testsupport.LogBuffer }

// decision finds the decision log line of request id. The line is written
// before Check answers, so it is there when the answer is.
func (l *lineBuffer) decision(id string) (decisionLine, bool) {
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var d decisionLine
		if json.Unmarshal(sc.Bytes(), &d) == nil && d.Msg == "decision" && d.RequestID == id {
			return d, true
		}
	}
	return decisionLine{}, false
}

// The tokens, each minted as its issuer mints it.

func (e *e2e) kite(widget, channel string) string {
	return e.issued(e.signer.MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryKite, WidgetID: widget, ChannelID: channel}))
}

func (e *e2e) link(channel string) string {
	return e.issued(e.signer.MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryPublicLink, ChannelID: channel}))
}

func (e *e2e) sat(role, scope string) string {
	return e.issued(e.signer.MintSAT(tokens.SATClaims{AccountID: "acct-1", ProviderID: "prov-1", Role: role, Scope: scope}))
}

func (e *e2e) access(sub, name string, guestSecret []byte) string {
	return e.issued(e.signer.MintAccess(tokens.AccessClaims{GuestIssuer: devGuestIssuer, GuestSubject: sub, Name: name,
		Generation: tokens.SecretGeneration(guestSecret)}))
}

func (e *e2e) guest(sub, name string, secret []byte) string {
	e.t.Helper()
	raw, err := tokens.MintGuest(secret, devGuestIssuer, sub, name, time.Now().Add(time.Hour))
	if err != nil {
		e.t.Fatal(err)
	}
	return raw
}

func (e *e2e) issued(i tokens.Issued, err error) string {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
	return i.Token
}

// xbsClaims are an ID token of the development pool as an external pool
// (one guestgate did not mint) issues it: a widget, no entry, no channel.
func xbsClaims(widget string) map[string]any {
	now := time.Now().Unix()
	return map[string]any{
		"sub": "7d3c1b8e-0000-4000-8000-000000000001", "cognito:username": "7d3c1b8e-0000-4000-8000-000000000001",
		"iss": devXBSIssuer, "aud": devXBSAudience, "token_use": "id",
		"custom:authorization_type": "XBS_ANONYMOUS", "custom:wid": widget,
		"name": "guest", "email": "anonymous-" + strings.ToLower(widget) + "@anonymous.dev.guestgate.invalid", "email_verified": false,
		"auth_time": now, "iat": now, "exp": now + 3600, "jti": "e2e-jti",
	}
}

// signXBS signs claims with the development pool's key, as the pool does.
func (e *e2e) signXBS(claims map[string]any) string {
	return e.sign(e.xbsKey, "", claims)
}

// sign signs claims with key, its kid and typ (none when "") in the header.
func (e *e2e) sign(key tokens.SigningKey, typ string, claims map[string]any) string {
	e.t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		e.t.Fatal(err)
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, key.ID)
	if typ != "" {
		_ = hdr.Set(jws.TypeKey, typ)
	}
	raw, err := jws.Sign(payload, jws.WithKey(jwa.SignatureAlgorithm(key.Algorithm), key.Private, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(raw)
}

// partnerDocsGuestToken builds a guest token exactly as the guest-issuer
// documentation tells a partner to, with no JWT library: header
// {"typ":"JWT","alg":"HS256"}, a numeric exp, HMAC-SHA256 keyed with key.
func partnerDocsGuestToken(key []byte, sub, name string) string {
	enc := base64.RawURLEncoding.EncodeToString
	header := enc([]byte(`{"typ":"JWT","alg":"HS256"}`))
	payload := enc([]byte(fmt.Sprintf(`{"sub":%q,"name":%q,"iss":%q,"exp":%d}`, sub, name, devGuestIssuer, time.Now().Add(time.Hour).Unix())))
	m := hmac.New(sha256.New, key)
	m.Write([]byte(header + "." + payload))
	return header + "." + payload + "." + enc(m.Sum(nil))
}

// pastSigner is the development signer with its clock set back, for
// tokens that have expired by now.
func (e *e2e) pastSigner(ago time.Duration) *tokens.Signer {
	e.t.Helper()
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		e.t.Fatal(err)
	}
	sc, err := wiring.SignerConfig(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	sc.Now = func() time.Time { return time.Now().Add(-ago) }
	s, err := tokens.NewSigner(sc)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// editJSON rewrites a data file of the policy copy through edit, the way
// an operator's editor saves it (write a temporary file, rename it over).
func (e *e2e) editJSON(rel string, edit func(doc map[string]any)) {
	e.t.Helper()
	p := filepath.Join(e.policyDir, rel)
	b, err := os.ReadFile(p)
	if err != nil {
		e.t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		e.t.Fatal(err)
	}
	edit(doc)
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		e.t.Fatal(err)
	}
	replaceFile(e.t, p, out)
}

// replaceFile writes data to a sibling and renames it over p.
func replaceFile(t testing.TB, p string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t testing.TB, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// httpGet returns the body of a GET, whatever its status.
func httpGet(url string) ([]byte, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}
