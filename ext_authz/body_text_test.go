package ext_authz

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/guestgate/guestgate/config"
)

// allowAll allows every request: whatever refuses a request below refused
// it before the policy ran.
const allowAll = "package guestgate.authz\n\ndecision := true\n"

// notUTF8 are byte sequences that are not UTF-8 wherever they stand in a
// text: bytes that never occur, stray continuation bytes, overlong forms
// ("\xc0\xaf" is an overlong "/", "\xc0\xad" a soft hyphen some decoders
// drop), encoded surrogates, code points past U+10FFFF, and sequences cut
// short.
var notUTF8 = []string{
	"\xff", "\xfe", "\x80", "\xbf", "\xc0\xaf", "\xc1\xbf", "\xc0\xad", "\xe0\x80\xaf", "\xf0\x80\x80\xaf",
	"\xed\xa0\x80", "\xed\xbf\xbf", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80", "\xc2", "\xe2\x82", "\xf0\x9f\x98",
}

// textBodies are JSON and form bodies the check takes, of the shapes the
// guest routes read: person fields, lists, nested objects, text that is not
// ASCII, percent escapes.
var textBodies = []struct{ contentType, body string }{
	{"application/json", `{"toPersonId":"guest-2","text":"hé ✓ 日本"}`},
	{"application/json", `{"personId":["a","b"],"n":1.5,"ok":true,"x":null,"o":{"id":"guest-2"}}`},
	{"application/json; charset=utf-8", `[{"id":"x"},{"id":"\u00e9\ud83d\ude00"}]`},
	{"application/vnd.api+json", ` "plain" `},
	{"application/x-www-form-urlencoded", "toPersonId=guest-2&text=h%C3%A9+%E2%9C%93"},
	{"application/x-www-form-urlencoded; charset=UTF-8", "personId=a&personId=b&id=x"},
}

// spoil inserts one sequence of notUTF8 at a random place of body: as it
// is, or, in a form, percent-encoded (so that it is not UTF-8 once
// decoded).
func spoil(r *rand.Rand, contentType, body string) string {
	bad := notUTF8[r.IntN(len(notUTF8))]
	if strings.HasPrefix(contentType, "application/x-www-form-urlencoded") && r.IntN(2) == 0 {
		var b strings.Builder
		for i := 0; i < len(bad); i++ {
			fmt.Fprintf(&b, "%%%02X", bad[i])
		}
		bad = b.String()
	}
	at := r.IntN(len(body) + 1)
	return body[:at] + bad + body[at:]
}

// bodyChecker is a checker with the allowAll policy, its HTTP check in
// Envoy's form and its decision endpoint on loopback, and its gRPC server
// on loopback; it records the last decision.
type bodyChecker struct {
	checker   *Checker
	grpc      authv3.AuthorizationClient
	conn      *grpc.ClientConn
	httpCheck string // URL of the HTTP check's prefix, without the final /
	decide    string // URL of the decision endpoint
	last      chan *Decision
}

func newBodyChecker(t *testing.T) *bodyChecker {
	t.Helper()
	eng, dir := policyEngine(t, allowAll)
	cfg, err := config.Parse([]byte("http_check:\n  form: envoy\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	bc := &bodyChecker{last: make(chan *Decision, 1)}
	bc.checker = New(Settings{Check: cfg.Check, DecisionLog: cfg.DecisionLog, HTTPCheck: cfg.HTTPCheck}, Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Observer: observerFunc(func(d *Decision) {
			select {
			case <-bc.last:
			default:
			}
			bc.last <- d
		}),
	})
	bc.checker.SetEngine(eng)
	conn := loopback(t, bc.checker.Register)
	bc.grpc, bc.conn = authv3.NewAuthorizationClient(conn), conn
	check := httptest.NewServer(bc.checker.HTTP(http.NotFoundHandler()))
	t.Cleanup(check.Close)
	bc.httpCheck = check.URL + strings.TrimSuffix(config.DefaultHTTPCheckPrefix, "/")
	dec := httptest.NewServer(bc.checker.DecideHandler())
	t.Cleanup(dec.Close)
	bc.decide = dec.URL
	return bc
}

// channel is one way a body reaches the check; it returns the decision
// the check answered with, or fails t.
type channel struct {
	name string
	send func(t *testing.T, bc *bodyChecker, contentType, body string) *Decision
}

func (bc *bodyChecker) decision(t *testing.T) *Decision {
	t.Helper()
	select {
	case d := <-bc.last:
		return d
	default:
		t.Fatal("the check answered without a decision")
		return nil
	}
}

func bodyRequest(contentType string) *authv3.CheckRequest {
	return checkRequest("POST", "/v1/messages", map[string]string{"content-type": contentType}, "")
}

var bodyChannels = []channel{
	{"Decide with body", func(t *testing.T, bc *bodyChecker, ct, body string) *Decision {
		cr := bodyRequest(ct)
		cr.Attributes.Request.Http.Body = body
		return bc.checker.Decide(context.Background(), cr)
	}},
	{"Decide with raw_body", func(t *testing.T, bc *bodyChecker, ct, body string) *Decision {
		cr := bodyRequest(ct)
		cr.Attributes.Request.Http.RawBody = []byte(body)
		return bc.checker.Decide(context.Background(), cr)
	}},
	{"gRPC body", func(t *testing.T, bc *bodyChecker, ct, body string) *Decision {
		// The protobuf runtime refuses to marshal a string field that is
		// not UTF-8, as Envoy's does not: the body field is appended to
		// the request's wire bytes by hand (a second http message, merged).
		wire, err := proto.Marshal(bodyRequest(ct))
		if err != nil {
			t.Fatal(err)
		}
		wire = append(wire, inHTTP(field(bodyNumber, []byte(body)))...)
		resp := &authv3.CheckResponse{}
		if err := bc.conn.Invoke(context.Background(), "/envoy.service.auth.v3.Authorization/Check", rawMessage(wire), resp, grpc.ForceCodecV2(rawCodec{})); err != nil {
			t.Fatalf("a gRPC error, not a CheckResponse: %v", err)
		}
		return bc.answered(t, resp)
	}},
	{"gRPC raw_body", func(t *testing.T, bc *bodyChecker, ct, body string) *Decision {
		cr := bodyRequest(ct)
		cr.Attributes.Request.Http.RawBody = []byte(body)
		resp, err := bc.grpc.Check(context.Background(), cr)
		if err != nil {
			t.Fatalf("a gRPC error, not a CheckResponse: %v", err)
		}
		return bc.answered(t, resp)
	}},
	{"HTTP check (Envoy's form)", func(t *testing.T, bc *bodyChecker, ct, body string) *Decision {
		resp, err := decideClient.Post(bc.httpCheck+"/v1/messages", ct, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		d := bc.decision(t)
		if d.Allowed != (resp.StatusCode == http.StatusOK) || !d.Allowed && resp.StatusCode != d.Status {
			t.Fatalf("answered %d for a decision %+v", resp.StatusCode, d)
		}
		return d
	}},
}

// answered is the decision a CheckResponse came from, checked against it.
func (bc *bodyChecker) answered(t *testing.T, resp *authv3.CheckResponse) *Decision {
	t.Helper()
	d := bc.decision(t)
	if got := resp.GetDeniedResponse().GetStatus().GetCode(); d.Allowed != (resp.GetOkResponse() != nil) || !d.Allowed && int(got) != d.Status {
		t.Fatalf("answered %v for a decision %+v", resp, d)
	}
	return d
}

// TestBodiesThatAreNotUTF8AreRefusedOnEveryChannel is the property: a
// JSON or form body with a sequence that is not UTF-8 anywhere (in a name,
// a value, between them; as bytes or, in a form, percent-encoded) is
// refused bad_body with 400 before the policy runs, whichever way it comes:
// the gRPC body and raw_body, the HTTP check, the decision endpoint. The
// same bodies unspoiled are allowed, so the refusal is the bytes'.
func TestBodiesThatAreNotUTF8AreRefusedOnEveryChannel(t *testing.T) {
	bc := newBodyChecker(t)
	r := rand.New(rand.NewPCG(13, 8))
	for _, ch := range bodyChannels {
		t.Run(ch.name, func(t *testing.T) {
			for _, tb := range textBodies {
				if d := ch.send(t, bc, tb.contentType, tb.body); !d.Allowed {
					t.Fatalf("%s %q: denied %s, want allowed", tb.contentType, tb.body, d.Reason)
				}
			}
			for range 300 {
				tb := textBodies[r.IntN(len(textBodies))]
				body := spoil(r, tb.contentType, tb.body)
				d := ch.send(t, bc, tb.contentType, body)
				if d.Allowed || d.Reason != ReasonBadBody || d.Status != http.StatusBadRequest || d.Revision != "" {
					t.Fatalf("%s %q: allowed %v, %d %s (revision %q), want 400 bad_body before the policy", tb.contentType, body, d.Allowed, d.Status, d.Reason, d.Revision)
				}
			}
		})
	}
	t.Run("decision endpoint", func(t *testing.T) {
		for range 300 {
			tb := textBodies[r.IntN(len(textBodies))]
			body := spoil(r, tb.contentType, tb.body)
			status, answer := postDecideBody(t, bc.decide, tb.contentType, body)
			switch {
			case !utf8.ValidString(body):
				// The endpoint's own request is JSON, which such bytes
				// cannot be.
				if status != http.StatusBadRequest || !strings.Contains(fmt.Sprint(answer["error"]), "UTF-8") {
					t.Fatalf("%q: answered %d %v, want 400 naming UTF-8", body, status, answer)
				}
			case status != http.StatusOK || answer["allowed"] != false || answer["reason"] != ReasonBadBody || answer["status"] != float64(400):
				t.Fatalf("%q: answered %d %v, want the decision 400 bad_body", body, status, answer)
			}
		}
		for _, tb := range textBodies {
			if status, answer := postDecideBody(t, bc.decide, tb.contentType, tb.body); status != http.StatusOK || answer["allowed"] != true {
				t.Fatalf("%q: answered %d %v, want allowed", tb.body, status, answer)
			}
		}
	})
}

// postDecideBody asks the decision endpoint about a POST with body, the
// body's bytes written into the endpoint's JSON request as they are.
func postDecideBody(t *testing.T, url, contentType, body string) (int, map[string]any) {
	t.Helper()
	head, _ := json.Marshal(map[string]any{"method": "POST", "path": "/v1/messages", "headers": map[string]string{"content-type": contentType}})
	var doc bytes.Buffer
	doc.Write(head[:len(head)-1])
	doc.WriteString(`,"body":"`)
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case c == '"' || c == '\\':
			doc.WriteByte('\\')
			doc.WriteByte(c)
		default:
			doc.WriteByte(c)
		}
	}
	doc.WriteString(`"}`)
	return postDecide(t, url, "application/json", doc.String())
}

// TestJSONStringsThatAreNotTextAreRefused: besides bytes that are not
// UTF-8, a \u escape of a lone surrogate (high or low, at the end, before
// another escape or a character) is not a character: refused, not made
// U+FFFD; a pair is one character.
func TestJSONStringsThatAreNotTextAreRefused(t *testing.T) {
	bc := newBodyChecker(t)
	for _, c := range []struct {
		doc     string
		allowed bool
	}{
		{`{"toPersonId\ud800":"guest-2"}`, false},
		{`{"toPersonId":"guest-2\udc00"}`, false},
		{`{"toPersonId":"guest\ud800\u0041"}`, false},
		{`{"toPersonId":"guest\ud800x"}`, false},
		{`{"toPersonId":"guest\udbff\udbff"}`, false},
		{`{"a":"\ud83d\ude00"}`, true},
		{`{"a":"\u00e9\uffff"}`, true},
	} {
		d := bodyChannels[0].send(t, bc, "application/json", c.doc)
		if d.Allowed != c.allowed || !c.allowed && d.Reason != ReasonBadBody {
			t.Errorf("%s: allowed %v (%s), want %v", c.doc, d.Allowed, d.Reason, c.allowed)
		}
	}
}

// TestBodyCutShortMayEndInsideACharacter: a body Envoy cut short (partial
// body) may end inside a character, which is no fault of the client's: it
// is not refused for that, and the policy sees it truncated. Bytes that are
// not UTF-8 before the cut, or a last sequence no continuation completes,
// are refused all the same. A compressed body is not text at all.
func TestBodyCutShortMayEndInsideACharacter(t *testing.T) {
	bc := newBodyChecker(t)
	for _, c := range []struct {
		name, body string
		headers    map[string]string
		allowed    bool
	}{
		{"cut inside a 3-byte character", `{"text":"日本` + "\xe8\xaa", map[string]string{"x-envoy-auth-partial-body": "true"}, true},
		{"cut after the lead of a 4-byte one", `{"text":"` + "\xf0", map[string]string{"x-envoy-auth-partial-body": "true"}, true},
		{"cut after E0 A0", `{"text":"` + "\xe0\xa0", map[string]string{"content-length": "999"}, true},
		{"cut inside a surrogate", `{"text":"` + "\xed\xa0", map[string]string{"x-envoy-auth-partial-body": "true"}, false},
		{"cut after an overlong lead", `{"text":"` + "\xc0", map[string]string{"x-envoy-auth-partial-body": "true"}, false},
		{"not UTF-8 before the cut", `{"text":"` + "\xff" + `abc`, map[string]string{"x-envoy-auth-partial-body": "true"}, false},
		{"cut inside a character, but not cut", `{"text":"` + "\xe8\xaa", nil, false},
		{"compressed", "\x1f\x8b\x08\x00\xff\xfe", map[string]string{"content-encoding": "gzip"}, true},
	} {
		cr := bodyRequest("application/json")
		for k, v := range c.headers {
			cr.Attributes.Request.Http.Headers[k] = v
		}
		cr.Attributes.Request.Http.Body = c.body
		d := bc.checker.Decide(context.Background(), cr)
		if d.Allowed != c.allowed || !c.allowed && d.Reason != ReasonBadBody {
			t.Errorf("%s: allowed %v (%s), want %v", c.name, d.Allowed, d.Reason, c.allowed)
		}
	}
}

// FuzzBodyText holds the check to the property above for any body: a JSON
// or form body the check lets through is UTF-8, and so is a form's every
// name and value once percent-decoded; one that is not is refused
// bad_body.
func FuzzBodyText(f *testing.F) {
	eng, dir := policyEngine(f, allowAll)
	cfg, err := config.Parse(nil, dir)
	if err != nil {
		f.Fatal(err)
	}
	c := New(Settings{Check: cfg.Check, DecisionLog: cfg.DecisionLog}, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	c.SetEngine(eng)
	r := rand.New(rand.NewPCG(1, 1))
	for i, tb := range textBodies {
		f.Add(uint8(i), tb.body, false)
		f.Add(uint8(i), spoil(r, tb.contentType, tb.body), i%2 == 0)
	}
	f.Fuzz(func(t *testing.T, kind uint8, body string, raw bool) {
		ct := textBodies[int(kind)%len(textBodies)].contentType
		cr := bodyRequest(ct)
		if raw {
			cr.Attributes.Request.Http.RawBody = []byte(body)
		} else {
			cr.Attributes.Request.Http.Body = body
		}
		d := c.Decide(context.Background(), cr)
		text := utf8.ValidString(body)
		if strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
			text = text && utf8.ValidString(percentDecoded(body))
		}
		if d.Allowed && !text {
			t.Fatalf("%s %q: allowed, but it is not UTF-8", ct, body)
		}
		if !text && body != "" && d.Reason != ReasonBadBody {
			t.Fatalf("%s %q: %s, want bad_body", ct, body, d.Reason)
		}
	})
}

// percentDecoded is s with every %XX escape replaced by its byte; others
// left as they are.
func percentDecoded(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			v, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b.WriteByte(byte(v))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
