package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/tokens"
)

// grpcCheck sends one request, as Envoy describes it, to the sidecar's real
// gRPC Check and returns the gRPC status code of the answer and, for a
// denial, its HTTP status.
func grpcCheck(t *testing.T, s *sidecar, method, path, token string) (codes.Code, int) {
	t.Helper()
	conn, err := grpc.NewClient(s.grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: "chat.example", Scheme: "https", Protocol: "HTTP/1.1",
			Headers: map[string]string{"authorization": "Bearer " + token},
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return codes.Code(resp.GetStatus().GetCode()), int(resp.GetDeniedResponse().GetStatus().GetCode())
}

// post calls a route of a running listener and decodes its JSON answer.
func post(t *testing.T, base, path string, h http.Header, out any) int {
	t.Helper()
	status, body := send(t, "POST", base+path, h, "")
	if status == http.StatusOK && out != nil {
		if err := json.Unmarshal([]byte(body), out); err != nil {
			t.Fatalf("%s: %v in %s", path, err, body)
		}
	}
	return status
}

// send makes a request to a running listener and returns its status and body.
func send(t *testing.T, method, url string, h http.Header, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// signedHeaders runs the sign-request tool, as a client's script would, and
// parses the headers it prints.
func signedHeaders(t *testing.T, clientID, secretFile string) http.Header {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run([]string{"sign-request", "--client-id", clientID, "--secret-file", secretFile, "--random-nonce"}, nil, &out, &errOut); code != 0 {
		t.Fatalf("sign-request: %s", errOut.String())
	}
	h := http.Header{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		h.Set(k, v)
	}
	return h
}

// TestMintedTokensPassTheShippedPolicy is one round trip per kind: mint
// through the issuer endpoint on the public listener, present the token to
// the real gRPC Check, and see the shipped policy allow a request of that
// kind (and deny one outside it).
func TestMintedTokensPassTheShippedPolicy(t *testing.T) {
	s, _, _ := startDev(t)
	public := "http://" + s.httpLis.Addr().String()

	var kite struct{ Token, ChannelID string }
	if st := post(t, public, "/v1/anonymous/widgets/W-DEMO/token", nil, &kite); st != 200 {
		t.Fatalf("widget session: %d", st)
	}
	var link struct{ Token, ChannelID string }
	if st := post(t, public, "/v1/anonymous/public-chats/public-lobby/token", nil, &link); st != 200 {
		t.Fatalf("public chat: %d", st)
	}
	var sat string
	if st := post(t, public, "/v1/accounts/dev-account/secure-anonymous/dev-provider/tokens", signedHeaders(t, "dev-admin", "testdata/dev/secrets/sat-admin-dev.secret"), &sat); st != 200 {
		t.Fatalf("SAT: %d", st)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"mint", "guest", "--issuer", "dev-guest-issuer", "--sub", "guest-1", "--name", "Ada", "--secret-file", "testdata/dev/secrets/guest-dev.b64"}, nil, &out, &errOut); code != 0 {
		t.Fatalf("mint guest: %s", errOut.String())
	}
	guest := strings.TrimSpace(out.String())
	var login struct{ Token, ExpiresIn string }
	if st := post(t, public, "/v1/jwt/login", http.Header{"Authorization": {"Bearer " + guest}}, &login); st != 200 || login.ExpiresIn == "" {
		t.Fatalf("login: %d %+v", st, login)
	}
	regular := "person-" + strings.Repeat("7", 8)

	cases := []struct {
		kind, token, method, allowed, denied string
	}{
		{"xbs_anonymous kite", kite.Token, "POST", "/conversations/channels/" + kite.ChannelID + "/MarkReadCommand", "/conversations/channels/public-lobby/MarkReadCommand"},
		{"xbs_anonymous public_link", link.Token, "POST", "/conversations/channels/public-lobby/JoinChannelCommand", "/conversations/channels/support-1/JoinChannelCommand"},
		{"secure_anonymous", sat, "GET", "/v1/launchpads/lp-dev/pages", "/v1/launchpads/lp-dev-2/pages"},
		{"guest", guest, "POST", "/v1/jwt/login", "/v1/messages"},
		{"access", login.Token, "GET", "/v1/people/" + regular, "/v1/people/" + tokens.GuestPersonID("dev-guest-issuer", "guest-2")},
	}
	for _, tc := range cases {
		t.Run(tc.kind, func(t *testing.T) {
			if code, status := grpcCheck(t, s, tc.method, tc.allowed, tc.token); code != codes.OK {
				t.Fatalf("%s %s: denied %d, want allowed", tc.method, tc.allowed, status)
			}
			if code, status := grpcCheck(t, s, tc.method, tc.denied, tc.token); code == codes.OK || status != 403 {
				t.Fatalf("%s %s: %v %d, want 403", tc.method, tc.denied, code, status)
			}
		})
	}
}

func TestAdminListenerServesTheIssuerRoutesToo(t *testing.T) {
	s, _, _ := startDev(t)
	var kite struct{ Token, ChannelID string }
	if st := post(t, "http://"+s.adminLis.Addr().String(), "/v1/anonymous/widgets/W-DEMO/token", nil, &kite); st != 200 || kite.Token == "" {
		t.Fatalf("admin listener: %d", st)
	}
	resp, err := http.Get("http://" + s.httpLis.Addr().String() + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") == "" {
		t.Fatalf("jwks: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestMintToolsTakeSecretsOnlyFromEnvFileOrStdin(t *testing.T) {
	repoRoot(t)
	secret, err := os.ReadFile("testdata/dev/secrets/guest-dev.b64")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GUESTGATE_TEST_GUEST_SECRET", strings.TrimSpace(string(secret)))
	guestArgs := []string{"mint", "guest", "--issuer", "dev-guest-issuer", "--sub", "g-1"}
	cases := []struct {
		name  string
		args  []string
		stdin string
		ok    bool
	}{
		{"env", append(guestArgs, "--secret-env", "GUESTGATE_TEST_GUEST_SECRET"), "", true},
		{"stdin", append(guestArgs, "--secret-stdin"), string(secret), true},
		{"file", append(guestArgs, "--secret-file", "testdata/dev/secrets/guest-dev.b64"), "", true},
		{"secret as an argument", append(guestArgs, string(secret)), "", false},
		{"no secret", guestArgs, "", false},
		{"two sources", append(guestArgs, "--secret-stdin", "--secret-env", "GUESTGATE_TEST_GUEST_SECRET"), string(secret), false},
		{"sign-request without a secret", []string{"sign-request", "--client-id", "dev-admin"}, "", false},
		{"sat of another account", []string{"mint", "sat", "--account", "dev-account", "--provider", "dev-provider-2"}, "", false},
		{"access", []string{"mint", "access", "--issuer", "dev-guest-issuer", "--sub", "g-1"}, "", true},
		{"xbs-anonymous public link", []string{"mint", "xbs-anonymous", "--public-channel", "public-lobby"}, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tc.args, strings.NewReader(tc.stdin), &out, &errOut)
			if (code == 0) != tc.ok {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			if tc.ok && strings.Count(strings.TrimSpace(out.String()), ".") != 2 {
				t.Fatalf("not a token: %q", out.String())
			}
		})
	}
}

// TestMintXBSAnonymousRefusesKeysOtherThanTheDevelopmentOnes: outside the
// development setup (here with fresh keys of its own) xbs-anonymous tokens
// are never minted by hand.
func TestMintXBSAnonymousRefusesKeysOtherThanTheDevelopmentOnes(t *testing.T) {
	_, cfgPath := testsupport.CopyDevelopment(t, map[string]string{"development: true": "development: false"})
	var out, errOut bytes.Buffer
	if code := run([]string{"mint", "xbs-anonymous", "--widget", "W-DEMO", "--config", cfgPath}, nil, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "only with the development setup") {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
}

// TestMintRefusesPublishedDevelopmentKeysOutsideDevelopment: a config that
// is not the development setup but signs with the published development
// keys mints nothing, as serve and validate refuse it.
func TestMintRefusesPublishedDevelopmentKeysOutsideDevelopment(t *testing.T) {
	repoRoot(t)
	doc, err := os.ReadFile(filepath.Join("testdata", "dev", "guestgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	prod := strings.Replace(string(doc), "development: true", "development: false", 1)
	prod = strings.ReplaceAll(prod, "secrets/", filepath.Join(mustAbs(t, "testdata/dev"), "secrets")+"/")
	prod = strings.ReplaceAll(prod, "keys/", filepath.Join(mustAbs(t, "testdata/dev"), "keys")+"/")
	prod = strings.ReplaceAll(prod, "../../policies", mustAbs(t, "policies"))
	p := filepath.Join(dir, "prod.yaml")
	if err := os.WriteFile(p, []byte(prod), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"sat", "--account", "dev-account", "--provider", "dev-provider"},
		{"access", "--issuer", "dev-guest-issuer", "--sub", "guest-1"},
		{"xbs-anonymous", "--widget", "W-DEMO"},
	} {
		t.Run(args[0], func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(append(append([]string{"mint"}, args...), "--config", p), nil, &out, &errOut)
			if code == 0 || out.Len() != 0 || !strings.Contains(errOut.String(), "published development credential") {
				t.Fatalf("exit %d, stdout %q: %s", code, out.String(), errOut.String())
			}
		})
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestMintsAreCountedInMetrics: every request on a minting route moves
// guestgate_mints_total, labelled by route and by outcome (ok or the
// refusal's stable code).
func TestMintsAreCountedInMetrics(t *testing.T) {
	s, _, _ := startDev(t)
	public := "http://" + s.httpLis.Addr().String()
	const okSample = `guestgate_mints_total{outcome="ok",route="widget_session"}`
	const unknownSample = `guestgate_mints_total{outcome="widget_unknown",route="widget_session"}`
	const badSigSample = `guestgate_mints_total{outcome="signature_invalid",route="secure_anonymous"}`
	before := testsupport.Scrape(t, metricsURL(s))

	if st := post(t, public, "/v1/anonymous/widgets/W-DEMO/token", nil, nil); st != 200 {
		t.Fatalf("widget session: %d", st)
	}
	if st := post(t, public, "/v1/anonymous/widgets/W-NOBODY/token", nil, nil); st != 404 {
		t.Fatalf("unknown widget: %d", st)
	}
	h := signedHeaders(t, "dev-admin", "testdata/dev/secrets/sat-admin-dev.secret")
	h.Set("X-Frame-Signature", strings.Repeat("0", 64))
	if st := post(t, public, "/v1/accounts/dev-account/secure-anonymous/dev-provider/tokens", h, nil); st != 401 {
		t.Fatalf("bad signature: %d", st)
	}

	after := testsupport.Scrape(t, metricsURL(s))
	for _, sample := range []string{okSample, unknownSample, badSigSample} {
		if d := testsupport.Metric(t, after, sample) - testsupport.Metric(t, before, sample); d != 1 {
			t.Errorf("%s moved by %v, want 1", sample, d)
		}
	}
}
