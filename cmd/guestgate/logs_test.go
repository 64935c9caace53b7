package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/tokens"
)

// TestLogsHoldNoTokenSecretOrBody sends the suite's kinds of requests (good
// and bad tokens of every kind, in a header, a cookie and the query, with
// JSON and form bodies) through the gRPC check and the HTTP check, with
// every log (operational and decision) captured at debug, and looks for
// every token, the guest secret in each of its forms, the signing keys and
// the bodies in every line written.
func TestLogsHoldNoTokenSecretOrBody(t *testing.T) {
	cfg := devConfig(t)
	cfg.HTTPCheck = config.HTTPCheck{Form: config.HTTPCheckEnvoy, PathPrefix: config.DefaultHTTPCheckPrefix}
	cfg.Check.Credentials = []config.Credential{
		{PathPrefix: "/q/", Query: "access_token"},
		{PathPrefix: "/c/", Cookie: "gg_session"},
		{Header: "authorization", Scheme: "Bearer"},
	}
	logs := &testsupport.LogBuffer{}
	s := startSidecar(t, cfg, logs)

	secretB64, err := os.ReadFile(filepath.Join("testdata", "dev", "secrets", "guest-dev.b64"))
	if err != nil {
		t.Fatal(err)
	}
	secret, err := tokens.DecodeGuestSecret(strings.TrimSpace(string(secretB64)))
	if err != nil {
		t.Fatal(err)
	}
	signer := signerOf(t, s)
	mint := func(i tokens.Issued, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return i.Token
	}
	guest := func(key []byte, exp time.Time) string {
		t.Helper()
		tok, err := tokens.MintGuest(key, "dev-guest-issuer", "user-42", "Ada", exp)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	kite := mint(signer.MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryKite, WidgetID: "W-DEMO", ChannelID: "support-1"}))
	parts := strings.Split(kite, ".")
	toks := map[string]string{
		"kite":        kite,
		"public link": mint(signer.MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryPublicLink, ChannelID: "public-lobby"})),
		"sat":         mint(signer.MintSAT(tokens.SATClaims{AccountID: "acc-1", ProviderID: "prov-1", Scope: "launchpads/lp-1"})),
		"access": mint(signer.MintAccess(tokens.AccessClaims{GuestIssuer: "dev-guest-issuer", GuestSubject: "user-42",
			Name: "Ada", Generation: tokens.SecretGeneration(secret)})),
		"guest":              guest(secret, time.Now().Add(time.Hour)),
		"expired guest":      guest(secret, time.Now().Add(-time.Hour)),
		"guest, wrong key":   guest([]byte("an entirely different 32-byte key!!"), time.Now().Add(time.Hour)),
		"tampered signature": parts[0] + "." + parts[1] + "." + flip(parts[2]),
		"alg none":           base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".",
		"malformed":          "not-a-jwt-MALFORMEDTOKENVALUE",
		"oversized":          "OVERSIZED" + strings.Repeat("Q", 9000) + ".e30.c2ln",
		"duplicate claims":   parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"a","sub":"b"}`)) + "." + parts[2],
	}
	bodies := []struct{ contentType, body string }{
		{"", ""},
		{"application/json", `{"personId":"BODYMARKERJSON-person","text":"BODYMARKERJSON-text"}`},
		{"application/x-www-form-urlencoded", "personId=BODYMARKERFORM-person&note=BODYMARKERFORM-note"},
		{"application/json", `{"broken":"BODYMARKERBROKEN`},
	}
	// Each route family and where its credential travels.
	type place struct{ path, header, cookie, query string }
	places := []place{
		{path: "/conversations/GetTokenCommand", header: "authorization"},
		{path: "/v1/people/guest-someone", header: "authorization"},
		{path: "/v1/jwt/login", header: "authorization"},
		{path: "/v1/launchpads/lp-1/items", header: "authorization"},
		{path: "/q/conversations/GetTokenCommand", query: "access_token"},
		{path: "/c/conversations/GetTokenCommand", cookie: "gg_session"},
	}

	conn, err := grpc.NewClient(s.grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	checks := 0
	for name, tok := range toks {
		for _, pl := range places {
			for _, b := range bodies {
				headers := map[string]string{"user-agent": "log-test"}
				uri := pl.path
				switch {
				case pl.header != "":
					headers[pl.header] = "Bearer " + tok
				case pl.cookie != "":
					headers["cookie"] = "theme=dark; " + pl.cookie + "=" + tok
				case pl.query != "":
					uri += "?lang=en&" + pl.query + "=" + url.QueryEscape(tok)
				}
				if b.contentType != "" {
					headers["content-type"] = b.contentType
				}
				// The gRPC check, as Envoy sends it.
				resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
					Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
						SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}},
					Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
						Method: "POST", Path: uri, Host: "chat.example", Headers: headers, Body: b.body,
					}},
				}})
				if err != nil || resp.GetStatus() == nil {
					t.Fatalf("%s %s: %v %v", name, uri, resp, err)
				}
				checks++
				// The HTTP check, as Envoy's HTTP ext_authz sends it.
				req, err := http.NewRequest("POST", "http://"+s.httpLis.Addr().String()+"/ext_authz"+uri, strings.NewReader(b.body))
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range headers {
					req.Header.Set(k, v)
				}
				hresp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				hresp.Body.Close()
				checks++
			}
		}
	}

	out := logs.String()
	if n := strings.Count(out, `"msg":"decision"`); n < checks {
		t.Fatalf("%d decision lines for %d checks: the test would prove nothing", n, checks)
	}
	forbidden := map[string]string{
		"guest secret (base64)":             strings.TrimSpace(string(secretB64)),
		"guest secret (raw)":                string(secret),
		"guest secret (hex)":                hex.EncodeToString(secret),
		"guest secret (base64url)":          base64.RawURLEncoding.EncodeToString(secret),
		"guest secret (base64, unpadded)":   base64.RawStdEncoding.EncodeToString(secret),
		"private key":                       "PRIVATE KEY",
		"JSON body":                         "BODYMARKERJSON",
		"form body":                         "BODYMARKERFORM",
		"broken body":                       "BODYMARKERBROKEN",
		"token payload of the kite token":   parts[1],
		"token signature of the kite token": parts[2],
	}
	for _, f := range []string{"xbs-dev-1.pem", "sat-dev-1.pem", "access-dev-1.pem"} {
		pem, err := os.ReadFile(filepath.Join("testdata", "dev", "keys", f))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(pem), "\n")
		forbidden["key material of "+f] = lines[1]
	}
	for name, tok := range toks {
		forbidden["token "+name] = tok
		forbidden["token "+name+" (query-escaped)"] = url.QueryEscape(tok)
		if ps := strings.Split(tok, "."); len(ps) == 3 && len(ps[2]) >= 16 {
			forbidden["signature of token "+name] = ps[2]
		}
	}
	for what, s := range forbidden {
		if len(s) < 8 {
			t.Fatalf("%s is too short to look for", what)
		}
		if strings.Contains(out, s) {
			i := strings.Index(out, s)
			start := strings.LastIndex(out[:i], "\n") + 1
			end := strings.Index(out[i:], "\n")
			if end < 0 {
				end = len(out) - i
			}
			t.Errorf("the logs hold the %s: %s", what, out[start:i+end])
		}
	}
}

// flip changes a token segment's last character, keeping it base64url.
func flip(seg string) string {
	last := seg[len(seg)-1]
	repl := byte('A')
	if last == 'A' {
		repl = 'B'
	}
	return seg[:len(seg)-1] + string(repl)
}
