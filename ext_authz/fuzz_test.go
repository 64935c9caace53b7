package ext_authz

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/guestgate/guestgate/config"
)

// FuzzCheck feeds hostile requests to the whole check (request reading,
// input building, the test policy, the decision and the response) and
// holds what must be true of every answer: nothing panics (Decide would
// turn a panic into internal_error, so that reason is a failure here), an
// allow is a 200 whose path passed the path rules, a denial is at least a
// 300, no header value guestgate writes can end a header line, the
// client's own x-guestgate-* headers never reach upstream, the credential
// never reaches the client, and the answer marshals.
func FuzzCheck(f *testing.F) {
	eng, dir := policyEngine(f, testPolicy)
	cfg, err := config.Parse(nil, dir)
	if err != nil {
		f.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := New(Settings{Check: cfg.Check, DecisionLog: cfg.DecisionLog}, Options{Logger: quiet})
	c.SetEngine(eng)

	for _, s := range []struct{ method, path, auth, ctype, body, forged string }{
		{"GET", "/allow?name=ada", "", "", "", ""},
		{"GET", "/allow?name=a%0d%0aset-cookie:%20x", "", "", "", "admin"},
		{"POST", "/body", "Bearer abc.def.ghi", "application/json", `{"name":"x\r\ny"}`, ""},
		{"POST", "/body", "", "application/json", `{"name":1,"name":2}`, ""},
		{"POST", "/body", "", "application/x-www-form-urlencoded", "name=%ZZ", ""},
		{"GET", "/a/../allow", "", "", "", ""},
		{"GET", "/a%2fb", "", "", "", ""},
		{"GET", "//allow", "", "", "", ""},
		{"GET", "/deny", "Bearer " + strings.Repeat("A", 9000), "", "", ""},
		{"GET", "/wrong-type", "Basic eDp5", "", "", ""},
		{"GET", "/conflict", "", "", "", ""},
		{"GET", "/allow-plain", "", "", "", "x\x00y"},
	} {
		f.Add(s.method, s.path, s.auth, s.ctype, s.body, s.forged)
	}
	f.Fuzz(func(t *testing.T, method, path, auth, ctype, body, forged string) {
		headers := map[string]string{"x-guestgate-subject": forged}
		if auth != "" {
			headers["authorization"] = auth
		}
		if ctype != "" {
			headers["content-type"] = ctype
		}
		d := c.Decide(context.Background(), checkRequest(method, path, headers, body))
		if d.Reason == ReasonInternal {
			t.Fatalf("the check panicked on %q %q", method, path)
		}
		if d.Allowed {
			if d.Status != 200 {
				t.Fatalf("allowed with status %d", d.Status)
			}
			p, _, _ := strings.Cut(path, "?")
			if why := checkPath(p); why != "" {
				t.Fatalf("allowed a path the path rules refuse (%s): %q", why, path)
			}
			set := map[string]bool{}
			for _, h := range d.UpstreamHeaders {
				set[h.Name] = true
			}
			removed := strings.Join(d.RemoveHeaders, ",")
			if !set["x-guestgate-subject"] && !strings.Contains(removed, "x-guestgate-subject") {
				t.Fatalf("the client's x-guestgate-subject goes upstream: set %v, removed %v", set, d.RemoveHeaders)
			}
		} else if d.Status < 300 || d.Status > 599 {
			t.Fatalf("denied with status %d", d.Status)
		}
		for _, hs := range [][]Header{d.UpstreamHeaders, d.DenyHeaders, d.ResponseHeaders, d.SetQuery} {
			for _, h := range hs {
				if strings.ContainsFunc(h.Name+h.Value, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
					t.Fatalf("header %q: %q can end a header line", h.Name, h.Value)
				}
			}
		}
		if _, token, ok := strings.Cut(auth, " "); ok && len(token) >= 8 {
			for _, h := range d.DenyHeaders {
				if strings.Contains(h.Value, token) {
					t.Fatal("the credential is in a header sent to the client")
				}
			}
			if strings.Contains(d.DenyBody, token) {
				t.Fatal("the credential is in the body sent to the client")
			}
		}
		if _, err := proto.Marshal(d.CheckResponse()); err != nil {
			t.Fatalf("the answer does not marshal: %v", err)
		}
	})
}
