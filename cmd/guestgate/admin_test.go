package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/tokens"
)

func TestAdminHostMustNameThisListener(t *testing.T) {
	loopback := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 8282}
	every := &net.TCPAddr{IP: net.IPv4zero, Port: 8282}
	podIP := &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 8282}
	extra := []string{"admin.internal", "Forward.example:9999", "::1"}
	cases := []struct {
		host string
		addr *net.TCPAddr
		ok   bool
	}{
		{"127.0.0.1:8282", loopback, true},
		{"localhost:8282", loopback, true},
		{"LOCALHOST:8282", loopback, true},
		{"127.0.0.1:8283", loopback, false},
		{"127.0.0.2:8282", loopback, false},
		{"rebind.attacker.example:8282", loopback, false}, // DNS rebinding
		{"127.0.0.1.nip.io:8282", loopback, false},
		{"", loopback, false},
		{"localhost:8282", podIP, false}, // localhost does not reach a pod's address
		{"10.1.2.3:8282", podIP, true},   // a kubelet probe, Prometheus
		{"10.9.9.9:8282", every, true},   // listening everywhere: any address literal
		{"[fd00::1]:8282", every, true},
		{"guestgate:8282", every, false}, // a name only where configured
		{"admin.internal:1234", loopback, true},
		{"admin.internal", loopback, true},
		{"forward.example:9999", loopback, true},
		{"forward.example:9998", loopback, false},
		{"[::1]:5555", loopback, true},
	}
	for _, c := range cases {
		if got := adminHostAllowed(c.host, c.addr, extra); got != c.ok {
			t.Errorf("Host %q on %s: allowed=%v, want %v", c.host, c.addr, got, c.ok)
		}
	}
}

// testClient bounds every request a test sends.
var testClient = &http.Client{Timeout: 10 * time.Second}

func do(t *testing.T, method, url string, headers map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminListenerRefusesOtherHostsAndCrossOriginPosts(t *testing.T) {
	s := startDevWith(t, nil)
	addr := s.adminLis.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	base := "http://" + addr
	decide := `{"method":"POST","path":"/conversations/GetTokenCommand"}`
	cases := []struct {
		name, method, path string
		headers            map[string]string
		status             int
	}{
		{"own address", "GET", "/healthz", nil, 200},
		{"localhost", "GET", "/playground/", map[string]string{"Host": "localhost:" + port}, 200},
		{"rebound name on a health check", "GET", "/healthz", map[string]string{"Host": "evil.example:" + port}, 421},
		{"rebound name on the page", "GET", "/playground/", map[string]string{"Host": "evil.example:" + port}, 421},
		{"rebound name on the decision endpoint", "POST", DecidePath, map[string]string{"Host": "evil.example:" + port, "Content-Type": "application/json"}, 421},
		{"same-origin fetch", "POST", DecidePath, map[string]string{"Content-Type": "application/json", "Origin": base, "Sec-Fetch-Site": "same-origin"}, 200},
		{"a tool without Origin", "POST", DecidePath, map[string]string{"Content-Type": "application/json"}, 200},
		{"cross-site fetch", "POST", DecidePath, map[string]string{"Content-Type": "application/json", "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, 403},
		{"same-site is not same-origin", "POST", DecidePath, map[string]string{"Content-Type": "application/json", "Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"}, 403},
		{"other Origin, old browser", "POST", DecidePath, map[string]string{"Content-Type": "application/json", "Origin": "https://evil.example"}, 403},
		{"cross-site mint", "POST", "/v1/accounts/dev-account/secure-anonymous/dev-provider/tokens", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, 403},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := ""
			if c.method == "POST" {
				body = decide
			}
			status, answer := do(t, c.method, base+c.path, c.headers, body)
			if status != c.status {
				t.Fatalf("%s %s answered %d %q, want %d", c.method, c.path, status, answer, c.status)
			}
		})
	}
}

func TestPlaygroundAndDecisionEndpointAreOffUnlessEnabled(t *testing.T) {
	s := startDevWith(t, func(c *config.Config) { c.Playground.Enabled = false })
	base := "http://" + s.adminLis.Addr().String()
	for _, p := range []struct{ method, path string }{{"GET", "/playground/"}, {"POST", DecidePath}} {
		if status, _ := do(t, p.method, base+p.path, map[string]string{"Content-Type": "application/json"}, "{}"); status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s answered %d with the playground off", p.method, p.path, status)
		}
	}
	if status, _ := do(t, "GET", base+"/healthz", nil, ""); status != http.StatusOK {
		t.Errorf("/healthz answered %d", status)
	}
}

func TestPlaygroundCatalogComesFromConfigAndPolicyDataWithoutSecrets(t *testing.T) {
	s := startDevWith(t, nil)
	status, body := do(t, "GET", "http://"+s.adminLis.Addr().String()+"/playground/catalog.json", nil, "")
	if status != http.StatusOK {
		t.Fatalf("catalog.json answered %d", status)
	}
	var c struct {
		Providers      []struct{ ID, Account string }
		Widgets        []string
		PublicChannels []string `json:"public_channels"`
		GuestIssuers   []string `json:"guest_issuers"`
		PolicyRevision string   `json:"policy_revision"`
	}
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Providers) == 0 || c.Providers[0].ID != "dev-provider" || c.Providers[0].Account != "dev-account" {
		t.Errorf("providers = %+v", c.Providers)
	}
	if strings.Join(c.Widgets, ",") != "W-DEMO" || strings.Join(c.PublicChannels, ",") != "public-lobby" {
		t.Errorf("widgets %v, public channels %v: want the enabled ones of the policy data", c.Widgets, c.PublicChannels)
	}
	if len(c.GuestIssuers) == 0 || c.PolicyRevision != s.engine.Revision() {
		t.Errorf("guest issuers %v, revision %q", c.GuestIssuers, c.PolicyRevision)
	}
	cfg := s.cfg.Load()
	for _, in := range cfg.Issuer.Integrations {
		if strings.Contains(body, in.Secret) {
			t.Errorf("the catalog carries %s's secret", in.ClientID)
		}
	}
	for _, ti := range cfg.Tokens.Issuers {
		if ti.Secret != "" && strings.Contains(body, ti.Secret) {
			t.Errorf("the catalog carries %s's secret", ti.Name)
		}
	}
}

func TestTurningThePlaygroundOnOrOffNeedsARestart(t *testing.T) {
	old := &config.Config{Playground: config.Playground{Enabled: true}}
	next := &config.Config{Playground: config.Playground{Enabled: false}}
	if err := needsRestart(old, next); err == nil || !strings.Contains(err.Error(), "playground.enabled") {
		t.Fatalf("needsRestart = %v, want a refusal naming playground.enabled", err)
	}
	next.Playground = config.Playground{Enabled: true, AdminHosts: []string{"admin.internal"}}
	if err := needsRestart(old, next); err != nil {
		t.Fatalf("admin_hosts is read live, yet a change needs a restart: %v", err)
	}
}

// addrListener is a listener that only reports an address.
type addrListener struct {
	net.Listener
	addr net.Addr
}

func (l addrListener) Addr() net.Addr { return l.addr }

func TestExamplesCallThePublicListenerByTheNameThePageWasOpenedWith(t *testing.T) {
	cases := []struct {
		listen *net.TCPAddr
		host   string
		want   string
	}{
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 8181}, "127.0.0.1:8282", "http://127.0.0.1:8181"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 8181}, "admin.internal:8282", "http://admin.internal:8181"},
		{&net.TCPAddr{IP: net.IPv6zero, Port: 8181}, "[fd00::7]:8282", "http://[fd00::7]:8181"},
	}
	for _, c := range cases {
		s := &sidecar{httpLis: addrListener{addr: c.listen}}
		r, _ := http.NewRequest("GET", "http://"+c.host+"/playground/examples.json", nil)
		if got := s.publicBaseURL(r); got != c.want {
			t.Errorf("listening on %s, page at %s: examples call %q, want %q", c.listen, c.host, got, c.want)
		}
	}
}

// The decision endpoint and Envoy's gRPC Check of the running sidecar
// decide the same requests the same way, with the shipped policy.
func TestDecisionEndpointDecidesAsTheGRPCCheckOfTheRunningSidecar(t *testing.T) {
	s := startDevWith(t, nil)
	signer := signerOf(t, s)
	kite, err := signer.MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryKite, WidgetID: "W-DEMO", ChannelID: "support-1"})
	if err != nil {
		t.Fatal(err)
	}
	sat, err := signer.MintSAT(tokens.SATClaims{AccountID: "dev-account", ProviderID: "dev-provider", Scope: "launchpads/lp-dev"})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(s.grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	cases := []struct {
		name, method, path, token string
		allowed                   bool
	}{
		{"chat command in its channel", "POST", "/conversations/channels/support-1/MarkReadCommand", kite.Token, true},
		{"command not allowed", "POST", "/conversations/channels/support-1/DeleteChannelCommand", kite.Token, false},
		{"another channel", "POST", "/conversations/channels/team-private/MarkReadCommand", kite.Token, false},
		{"no token", "POST", "/conversations/GetTokenCommand", "", false},
		{"bad token", "POST", "/conversations/GetTokenCommand", "a.b.c", false},
		{"SAT in its launchpad", "GET", "/v1/launchpads/lp-dev/home", sat.Token, true},
		{"SAT outside it", "GET", "/v1/launchpads/lp-other/home", sat.Token, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := json.Marshal(map[string]any{"method": c.method, "path": c.path, "token": c.token,
				"headers": map[string]string{"content-type": "application/json", "x-request-id": "0123456789abcdef"}, "body": "{}"})
			status, body := do(t, "POST", "http://"+s.adminLis.Addr().String()+DecidePath, map[string]string{"Content-Type": "application/json"}, string(req))
			if status != http.StatusOK {
				t.Fatalf("decision endpoint answered %d %s", status, body)
			}
			var d struct {
				Allowed      bool
				Status       int
				Reason       string
				HeadersAdded []struct{ Name, Value string } `json:"headers_added"`
			}
			if err := json.Unmarshal([]byte(body), &d); err != nil {
				t.Fatal(err)
			}
			headers := map[string]string{"content-type": "application/json", "x-request-id": "0123456789abcdef",
				":authority": "localhost", ":method": c.method, ":path": c.path, "content-length": "2"}
			if c.token != "" {
				headers["authorization"] = "Bearer " + c.token
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Method: c.method, Path: c.path, Host: "localhost", Headers: headers, Body: "{}"}}}})
			if err != nil {
				t.Fatal(err)
			}
			grpcAllowed := resp.GetOkResponse() != nil
			if d.Allowed != c.allowed || grpcAllowed != c.allowed {
				t.Fatalf("endpoint allowed=%v (%s), gRPC allowed=%v, want %v", d.Allowed, d.Reason, grpcAllowed, c.allowed)
			}
			if !c.allowed {
				if got := int(resp.GetDeniedResponse().GetStatus().GetCode()); got != d.Status {
					t.Fatalf("endpoint status %d, gRPC %d", d.Status, got)
				}
				if !strings.Contains(resp.GetDeniedResponse().GetBody(), `"reason":"`+d.Reason+`"`) {
					t.Fatalf("gRPC deny body %s lacks the endpoint's reason %q", resp.GetDeniedResponse().GetBody(), d.Reason)
				}
				return
			}
			grpcHeaders := map[string]string{}
			for _, h := range resp.GetOkResponse().GetHeaders() {
				grpcHeaders[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			}
			if len(grpcHeaders) != len(d.HeadersAdded) {
				t.Fatalf("endpoint adds %v, gRPC %v", d.HeadersAdded, grpcHeaders)
			}
			for _, h := range d.HeadersAdded {
				if grpcHeaders[h.Name] != h.Value {
					t.Errorf("%s: endpoint %q, gRPC %q", h.Name, h.Value, grpcHeaders[h.Name])
				}
			}
		})
	}
}
