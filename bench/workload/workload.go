// Package workload is the traffic guestgate's benchmarks send: the
// development setup's signer and verifier (testdata/dev), real tokens of
// every kind minted with it, and a request mix in which every request
// carries the answer the shipped policy must give it.
//
// It is benchmark support only: nothing in the product imports it.
package workload

import (
	"context"
	"fmt"
	"net/http"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/tokens"
)

// Setup is a development config with its signer, so tokens that config
// trusts can be minted.
type Setup struct {
	Config      *config.Config
	Signer      *tokens.Signer
	guestIssuer string
	guestSecret []byte
}

// Load reads a config (testdata/dev/guestgate.yaml) and builds its signer.
func Load(path string) (*Setup, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	s := &Setup{Config: cfg}
	m := cfg.Minting
	sc := tokens.SignerConfig{AnonymousEmailDomain: m.AnonymousEmailDomain}
	for _, k := range []struct {
		in  config.MintedKind
		out *tokens.MintedKind
	}{{m.SAT, &sc.SAT}, {m.Access, &sc.Access}, {m.XBS, &sc.XBS}} {
		*k.out = tokens.MintedKind{Issuer: k.in.Issuer, Audience: k.in.Audience}
		for _, f := range k.in.KeyFiles {
			sk, err := tokens.LoadSigningKey(f)
			if err != nil {
				return nil, err
			}
			k.out.Keys = append(k.out.Keys, sk)
		}
	}
	if s.Signer, err = tokens.NewSigner(sc); err != nil {
		return nil, err
	}
	for _, ti := range cfg.Tokens.Issuers {
		if ti.Kind == "guest" && s.guestSecret == nil {
			if s.guestSecret, err = tokens.DecodeGuestSecret(ti.Secret); err != nil {
				return nil, fmt.Errorf("%s: %w", ti.Name, err)
			}
			s.guestIssuer = ti.Issuer
		}
	}
	if s.guestSecret == nil {
		return nil, fmt.Errorf("%s: no guest issuer", path)
	}
	return s, nil
}

// Verifier builds the verifier the config describes, as the sidecar does
// (cmd/guestgate/wire.go): the minted kinds verify with the signer's public
// keys. cacheSize overrides the config's token cache size (negative: off).
func (s *Setup) Verifier(ctx context.Context, cacheSize int) (*tokens.Verifier, error) {
	cfg := s.Config
	tc := tokens.Config{MaxTokenSize: cfg.Tokens.MaxSize, Leeway: cfg.Tokens.Leeway.D(), CacheSize: cacheSize}
	for _, ti := range cfg.Tokens.Issuers {
		is := tokens.Issuer{Name: ti.Name, Kind: tokens.Kind(ti.Kind), Issuer: ti.Issuer, Audiences: ti.Audiences,
			Algorithms: ti.Algorithms, GuestSecret: ti.Secret, MaxLifetime: ti.MaxLifetime.D()}
		if ti.Regular != nil {
			is.Regular = &tokens.Regular{AuthorizationTypes: ti.Regular.AuthorizationTypes}
		}
		if ti.Kind != "guest" {
			kind, minted := tokens.KindXBSAnonymous, cfg.Minting.XBS
			switch ti.Kind {
			case "secure_anonymous":
				kind, minted = tokens.KindSecureAnonymous, cfg.Minting.SAT
			case "access":
				kind, minted = tokens.KindAccess, cfg.Minting.Access
			}
			is.PublicKeys = s.Signer.PublicKeys(kind)
			if len(is.Audiences) == 0 {
				is.Audiences = []string{minted.Audience}
			}
		}
		tc.Issuers = append(tc.Issuers, is)
	}
	return tokens.New(ctx, tc)
}

// Tokens are one token of each kind, for one visitor, guest or launchpad.
type Tokens struct {
	Kite, Link, Guest, Access, SAT string
	GuestPersonID                  string // the access token's subject
}

// Mint mints one token of each kind; n tells visitors apart.
func (s *Setup) Mint(n int) (Tokens, error) {
	var t Tokens
	kite, err := s.Signer.MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryKite, WidgetID: "W-DEMO", ChannelID: KiteChannel(n)})
	if err != nil {
		return t, err
	}
	link, err := s.Signer.MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryPublicLink, ChannelID: "public-lobby"})
	if err != nil {
		return t, err
	}
	sub := fmt.Sprintf("guest-user-%d", n)
	guest, err := tokens.MintGuest(s.guestSecret, s.guestIssuer, sub, "Guest "+sub, time.Now().Add(time.Hour))
	if err != nil {
		return t, err
	}
	access, err := s.Signer.MintAccess(tokens.AccessClaims{GuestIssuer: s.guestIssuer, GuestSubject: sub,
		Name: "Guest " + sub, Generation: tokens.SecretGeneration(s.guestSecret)})
	if err != nil {
		return t, err
	}
	sat, err := s.Signer.MintSAT(tokens.SATClaims{AccountID: "acct-1", ProviderID: "prov-1", Scope: "launchpads/" + Launchpad(n)})
	if err != nil {
		return t, err
	}
	return Tokens{Kite: kite.Token, Link: link.Token, Guest: guest, Access: access.Token, SAT: sat.Token,
		GuestPersonID: access.Subject}, nil
}

// KiteChannel is visitor n's own Kite channel.
func KiteChannel(n int) string { return fmt.Sprintf("kite-%04d", n) }

// Launchpad is the launchpad SAT n opens.
func Launchpad(n int) string { return fmt.Sprintf("lp-%04d", n) }

// Case is one request and the answer it must get.
type Case struct {
	Name    string // stable label: the same for every visitor
	Request *authv3.CheckRequest
	Allowed bool
	Status  int // the HTTP status of a denial (0 on an allow)
}

// Check says whether resp is the answer c must get, and if not, why.
func (c Case) Check(resp *authv3.CheckResponse) error {
	if resp == nil {
		return fmt.Errorf("%s: no response", c.Name)
	}
	if c.Allowed {
		if resp.GetOkResponse() == nil {
			return fmt.Errorf("%s: denied (%d), want allowed", c.Name, resp.GetDeniedResponse().GetStatus().GetCode())
		}
		return nil
	}
	d := resp.GetDeniedResponse()
	if d == nil {
		return fmt.Errorf("%s: allowed, want denied %d", c.Name, c.Status)
	}
	if int(d.GetStatus().GetCode()) != c.Status {
		return fmt.Errorf("%s: denied %d, want %d", c.Name, d.GetStatus().GetCode(), c.Status)
	}
	return nil
}

// Cases are the requests of visitor n, holding t, one per kind of traffic:
// what the benchmarks measure one by one and the load test mixes.
func Cases(t Tokens, n int) []Case {
	kite := "/conversations/channels/" + KiteChannel(n) + "/"
	return []Case{
		{Name: "xbs_kite_command", Request: Request("POST", kite+"MarkReadCommand", t.Kite, `{"messageId":"m-1"}`), Allowed: true},
		{Name: "xbs_kite_get_token", Request: Request("POST", "/conversations/GetTokenCommand", t.Kite, ""), Allowed: true},
		{Name: "xbs_link_command", Request: Request("POST", "/conversations/channels/public-lobby/JoinChannelCommand", t.Link, ""), Allowed: true},
		{Name: "guest_login", Request: Request("POST", "/v1/jwt/login", t.Guest, ""), Allowed: true},
		{Name: "access_messages", Request: Request("GET", "/v1/messages?personId=regular-person-1", t.Access, ""), Allowed: true},
		{Name: "access_post_message", Request: Request("POST", "/v1/messages", t.Access, `{"toPersonId":"regular-person-2","text":"hi"}`), Allowed: true},
		{Name: "sat_launchpad", Request: Request("GET", "/v1/launchpads/"+Launchpad(n)+"/apps", t.SAT, ""), Allowed: true},
		{Name: "deny_xbs_command", Request: Request("POST", "/conversations/ListChannelsCommand", t.Kite, ""), Status: http.StatusForbidden},
		{Name: "deny_xbs_other_channel", Request: Request("POST", "/conversations/channels/support-1/MarkReadCommand", t.Kite, ""), Status: http.StatusForbidden},
		{Name: "deny_guest_to_guest", Request: Request("POST", "/v1/messages", t.Access, `{"toPersonId":"guest-aaaaaaaaaaaaaaaaaaaaaaaaaa"}`), Status: http.StatusForbidden},
		{Name: "deny_sat_other_launchpad", Request: Request("GET", "/v1/launchpads/lp-other/apps", t.SAT, ""), Status: http.StatusForbidden},
		{Name: "deny_missing_token", Request: Request("POST", "/conversations/GetTokenCommand", "", ""), Status: http.StatusUnauthorized},
		{Name: "deny_bad_signature", Request: Request("POST", "/conversations/GetTokenCommand", tamper(t.Kite), ""), Status: http.StatusUnauthorized},
	}
}

// WithBody returns c with its JSON body replaced (and the headers that
// describe it): the same request with other content, such as another
// message id.
func (c Case) WithBody(body string) Case {
	req := proto.Clone(c.Request).(*authv3.CheckRequest)
	h := req.GetAttributes().GetRequest().GetHttp()
	h.Body, h.Size = body, int64(len(body))
	h.Headers["content-type"] = "application/json"
	h.Headers["content-length"] = fmt.Sprint(len(body))
	c.Request = req
	return c
}

// tamper changes the last character of the signature: a token that parses
// but does not verify.
func tamper(tok string) string {
	if tok == "" {
		return ""
	}
	b := []byte(tok)
	if b[len(b)-1] == 'A' {
		b[len(b)-1] = 'B'
	} else {
		b[len(b)-1] = 'A'
	}
	return string(b)
}

// Request is a CheckRequest as Envoy sends it: source and destination, the
// usual headers, and the bearer token when tok is not empty.
func Request(method, path, tok, body string) *authv3.CheckRequest {
	headers := map[string]string{
		":authority":        "chat.example.com",
		":method":           method,
		":path":             path,
		":scheme":           "https",
		"accept":            "application/json",
		"user-agent":        "Mozilla/5.0 (X11; Linux x86_64) guestgate-bench",
		"x-forwarded-proto": "https",
		"x-request-id":      "0b1f6c5e-7a3d-4c2b-9e8f-1a2b3c4d5e6f",
	}
	if tok != "" {
		headers["authorization"] = "Bearer " + tok
	}
	if body != "" {
		headers["content-type"] = "application/json"
		headers["content-length"] = fmt.Sprint(len(body))
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      peer("10.0.0.7", 51234),
		Destination: peer("10.0.0.1", 8080),
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "4711", Method: method, Path: path, Host: "chat.example.com", Scheme: "https",
			Protocol: "HTTP/1.1", Headers: headers, Body: body, Size: int64(len(body)),
		}},
	}}
}

func peer(addr string, port uint32) *authv3.AttributeContext_Peer {
	return &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}},
	}}}
}
