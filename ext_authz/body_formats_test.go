package ext_authz

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/guestgate/guestgate/config"
)

// echoBodyPolicy shows what the policy was given of the body.
const echoBodyPolicy = `package guestgate.authz

decision := {"allowed": true, "headers": {
	"x-body": json.marshal(input.parsed_body),
	"x-truncated": json.marshal(input.truncated_body),
}}
`

// bodyFormatChecker serves policy with the config doc over gRPC.
func bodyFormatChecker(t *testing.T, policy, doc string) authv3.AuthorizationClient {
	t.Helper()
	eng, dir := policyEngine(t, policy)
	cfg, err := config.Parse([]byte(doc), dir)
	if err != nil {
		t.Fatal(err)
	}
	c := New(Settings{Check: cfg.Check, DecisionLog: cfg.DecisionLog}, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	c.SetEngine(eng)
	return authv3.NewAuthorizationClient(loopback(t, c.Register))
}

func multipartBody(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString("--XB\r\n" + p + "\r\n")
	}
	b.WriteString("--XB--\r\n")
	return b.String()
}

func formField(name, value string) string {
	return fmt.Sprintf("Content-Disposition: form-data; name=%q\r\n\r\n%s", name, value)
}

func TestBodiesPeopleSend(t *testing.T) {
	const mp = "multipart/form-data; boundary=XB"
	many := make([]string, maxMultipartParts+1)
	for i := range many {
		many[i] = formField("f", "x")
	}
	type want struct {
		body, truncated string // the echo headers; "" when denied
		reason          string // the denial's reason when denied
	}
	for _, tc := range []struct {
		name, doc, contentType, body string
		want                         want
	}{
		{"multipart text fields are lists of strings, a JSON part its value", "", mp,
			multipartBody(formField("channel", "general"), formField("mention", "ada"), formField("mention", "grace"),
				"Content-Disposition: form-data; name=\"meta\"\r\nContent-Type: application/json\r\n\r\n{\"k\":1}",
				"Content-Disposition: form-data\r\n\r\nno name: skipped"),
			want{body: `{"channel":["general"],"mention":["ada","grace"],"meta":[{"k":1}]}`, truncated: "false"}},
		{"a multipart file that is not text is not shown", "", mp,
			multipartBody(formField("channel", "general"), "Content-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\n\r\n\xff\xfe\x00"),
			want{body: "null", truncated: "true"}},
		{"a multipart body over the part bound is not shown", "", mp, multipartBody(many...),
			want{body: "null", truncated: "true"}},
		{"a multipart text field that is not UTF-8 is refused", "", mp, multipartBody(formField("name", "guest\xc0\xad2")),
			want{reason: ReasonBadBody}},
		{"a multipart JSON part with duplicate keys is refused", "", mp,
			multipartBody("Content-Disposition: form-data; name=\"meta\"\r\nContent-Type: application/json\r\n\r\n{\"k\":1,\"k\":2}"),
			want{reason: ReasonBadBody}},
		{"a multipart body that does not parse is refused", "", mp, "--XB\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nnever closed",
			want{reason: ReasonBadBody}},
		{"malformed JSON is refused by default", "", "application/json", `{"a":`, want{reason: ReasonBadBody}},
		{"skip_unparsable_body: malformed JSON is a body not shown", "check:\n  skip_unparsable_body: true\n", "application/json", `{"a":`,
			want{body: "null", truncated: "true"}},
		{"skip_unparsable_body: a broken multipart body is not shown", "check:\n  skip_unparsable_body: true\n", mp,
			"--XB\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nnever closed", want{body: "null", truncated: "true"}},
		{"skip_unparsable_body: a form that is JSON is not shown", "check:\n  skip_unparsable_body: true\n", "application/x-www-form-urlencoded", `{"a":1}`,
			want{body: "null", truncated: "true"}},
		{"skip_unparsable_body: duplicate keys are still refused", "check:\n  skip_unparsable_body: true\n", "application/json", `{"a":1,"a":2}`,
			want{reason: ReasonBadBody}},
		{"skip_unparsable_body: a body not UTF-8 is still refused", "check:\n  skip_unparsable_body: true\n", "application/json", "{\"a\":\"\xff\"}",
			want{reason: ReasonBadBody}},
		{"skip_request_body_parse: no body is shown", "check:\n  skip_request_body_parse: true\n", "application/json", `{"a":1}`,
			want{body: "null", truncated: "true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := bodyFormatChecker(t, echoBodyPolicy, "decision_log:\n  full: true\n"+tc.doc)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req := checkRequest("POST", "/v1/messages", map[string]string{"content-type": tc.contentType}, "")
			req.Attributes.Request.Http.RawBody = []byte(tc.body) // bytes: not all of them are UTF-8
			resp, err := client.Check(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want.reason != "" {
				denied(t, resp, http.StatusBadRequest, tc.want.reason)
				return
			}
			ok := resp.GetOkResponse()
			if ok == nil {
				t.Fatalf("denied: %v", resp)
			}
			h := headerMap(ok.GetHeaders())
			if h["x-body"] != encodeHeaderValue(tc.want.body) || h["x-truncated"] != tc.want.truncated {
				t.Fatalf("parsed_body %s, truncated_body %s; want %s, %s", h["x-body"], h["x-truncated"], tc.want.body, tc.want.truncated)
			}
		})
	}
}

// A denial a policy answers with a 2xx (the opa-envoy format lets it) is a
// 403 on the HTTP check: a proxy takes a 2xx there for an allow.
func TestOPAEnvoyDenialWithA2xxIsRefusedOnTheHTTPCheck(t *testing.T) {
	eng, dir := policyEngine(t, "package guestgate.authz\n\ndecision := {\"allowed\": false, \"http_status\": 200, \"body\": \"no\"}\n")
	cfg, err := config.Parse([]byte("check:\n  input_format: opa-envoy\nhttp_check:\n  form: envoy\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	c := New(Settings{Check: cfg.Check, DecisionLog: cfg.DecisionLog, HTTPCheck: cfg.HTTPCheck}, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	c.SetEngine(eng)
	srv := httptest.NewServer(c.HTTP(http.NotFoundHandler()))
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + strings.TrimSuffix(config.DefaultHTTPCheckPrefix, "/") + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("HTTP check answered %d, want 403", resp.StatusCode)
	}
}
