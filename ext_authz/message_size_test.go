package ext_authz

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/tokens"
)

// TestLargeRequestsOverGRPCAreAnsweredWithACheckResponse: the gRPC bound
// and the token bound are chosen together (config.Listen.MaxMessageBytes),
// so that what Envoy can send is answered with a CheckResponse by a real
// server on loopback with the default bounds: a 1 MiB token is a deny
// too_large (not RESOURCE_EXHAUSTED), and so is one just over
// tokens.max_size; Envoy's largest request with its default header bound
// (60 KiB of headers, the path among them and again as the path
// attribute) and the largest body the bound leaves room for are answered.
// Only a message past the documented bound is a gRPC error.
func TestLargeRequestsOverGRPCAreAnsweredWithACheckResponse(t *testing.T) {
	c, ws := shippedChecker(t, 0, 0)
	decided := make(chan *Decision, 1)
	c.observer = observerFunc(func(d *Decision) { decided <- d })
	client := authv3.NewAuthorizationClient(loopback(t, c.Register))
	toks, err := ws.Mint(1)
	if err != nil {
		t.Fatal(err)
	}
	defaults, err := config.Parse(nil, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	maxBody := defaults.Listen.MaxMessageBytes - config.MessageRoom

	// 60 KiB of headers: a long path (twice in the message) and more.
	longPath := "/conversations/channels/" + strings.Repeat("a", 20<<10) + "/GetTokenCommand"
	envoyLargest := testsupport.CheckRequest("POST", longPath, toks.Access, "")
	for i := range 8 {
		envoyLargest.Attributes.Request.Http.Headers["x-filler-"+string(rune('a'+i))] = strings.Repeat("f", 4<<10)
	}
	bigBody := testsupport.CheckRequest("POST", "/v1/messages", toks.Access, "")
	bigBody.Attributes.Request.Http.Headers["content-type"] = "application/json"
	bigBody.Attributes.Request.Http.RawBody = []byte(`{"text":"` + strings.Repeat("x", maxBody-12) + `"}`)

	for _, tc := range []struct {
		name     string
		req      *authv3.CheckRequest
		status   int
		tokenErr string
	}{
		{"a 1 MiB token", testsupport.CheckRequest("GET", "/v1/people/me", strings.Repeat("A", 1<<20), ""), http.StatusUnauthorized, tokens.CodeTooLarge},
		{"a token one byte over tokens.max_size", testsupport.CheckRequest("GET", "/v1/people/me", strings.Repeat("A", defaults.Tokens.MaxSize+1), ""), http.StatusUnauthorized, tokens.CodeTooLarge},
		{"Envoy's largest headers", envoyLargest, 0, ""},
		{"the largest body the bound leaves room for", bigBody, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.Check(context.Background(), tc.req)
			if err != nil {
				t.Fatalf("a gRPC error, not a CheckResponse: %v", err)
			}
			d := <-decided
			if tc.status != 0 && (int(resp.GetDeniedResponse().GetStatus().GetCode()) != tc.status || d.TokenError != tc.tokenErr) {
				t.Fatalf("answered %v, token_error %q; want %d %s", resp.GetStatus(), d.TokenError, tc.status, tc.tokenErr)
			}
			if tc.status == 0 && (d.TokenError != "" || d.Reason == ReasonBadRequest || d.Reason == ReasonBadBody) {
				t.Fatalf("the request was not read whole: %s, token_error %q", d.Reason, d.TokenError)
			}
		})
	}

	past := testsupport.CheckRequest("GET", "/v1/people/me", toks.Access, "")
	past.Attributes.Request.Http.RawBody = make([]byte, defaults.Listen.MaxMessageBytes)
	if _, err := client.Check(context.Background(), past); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a message past the bound: %v, want RESOURCE_EXHAUSTED", err)
	}
}
