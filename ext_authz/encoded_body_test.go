package ext_authz

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/url"
	"testing"

	"github.com/guestgate/guestgate/internal/testsupport"
)

// TestCompressedBodyIsNotReadAsIfItWereTheBody: a body sent with a
// Content-Encoding is not the text the upstream reads once it inflates it
// (Express's body-parser does by default). Parsed as a form as it stands,
// gzip bytes gave the policy fields of noise and none of the person fields
// inside: a guest could message another guest. The policy is told it
// cannot see the body (truncated_body) instead.
func TestCompressedBodyIsNotReadAsIfItWereTheBody(t *testing.T) {
	c, ws := shippedChecker(t, 0, 0)
	toks, err := ws.Mint(1)
	if err != nil {
		t.Fatal(err)
	}
	// A gzip of a form naming another guest whose bytes also parse as a
	// form (noise keys): the shape that slipped through.
	var body []byte
	for i := 0; body == nil; i++ {
		if i > 10000 {
			t.Fatal("no gzip that parses as a form")
		}
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		fmt.Fprintf(zw, "toPersonId=guest-aaaaaaaaaaaaaaaaaaaaaaaaaa&text=hi%d", i)
		zw.Close()
		if _, err := url.ParseQuery(b.String()); err == nil {
			body = b.Bytes()
		}
	}
	req := testsupport.CheckRequest("POST", "/v1/messages", toks.Access, string(body))
	h := req.GetAttributes().GetRequest().GetHttp()
	h.Headers["content-type"] = "application/x-www-form-urlencoded"
	h.Headers["content-encoding"] = "gzip"
	h.Body, h.RawBody = "", body
	d := c.Decide(context.Background(), req)
	if d.Allowed {
		t.Fatalf("a gzip form naming another guest was allowed")
	}
	// Without the encoding, the same words are the policy's to read.
	plain := testsupport.CheckRequest("POST", "/v1/messages", toks.Access, "toPersonId=regular-person-1&text=hi")
	plain.GetAttributes().GetRequest().GetHttp().Headers["content-type"] = "application/x-www-form-urlencoded"
	if d := c.Decide(context.Background(), plain); !d.Allowed {
		t.Fatalf("plain form denied: %s", d.Reason)
	}
}
