package ext_authz

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/guestgate/guestgate/state"
)

const revocationToken = "0123456789abcdef0123456789abcdef"

type brokenRevoke struct{ state.Revocations }

func (brokenRevoke) Revoke(context.Context, state.Revocation) error {
	return fmt.Errorf("%w: test: down", state.ErrUnavailable)
}

func TestRevocationRoute(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	store, err := state.Open(state.Options{Dir: t.TempDir(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	token := revocationToken
	var revs state.Revocations = store
	route := RevocationRoute{
		Store: nil, Token: func() string { return token },
		Lifetime: func(k state.Kind, iss string) (time.Duration, bool) {
			if k == state.RevokeSubject && iss != "known" {
				return 0, false
			}
			return 2 * time.Hour, true
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:    func() time.Time { return now },
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route.Store = revs
		RevocationHandler(route).ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	post := func(auth, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	ok := "Bearer " + revocationToken
	for _, c := range []struct {
		name, auth, body string
		status           int
		field            string
	}{
		{"no token", "", `{"jti":"a"}`, 401, ""},
		{"a wrong token", "Bearer " + strings.Repeat("x", 32), `{"jti":"a"}`, 401, ""},
		{"a prefix of the token", "Bearer " + revocationToken[:31], `{"jti":"a"}`, 401, ""},
		{"basic scheme", "Basic " + revocationToken, `{"jti":"a"}`, 401, ""},
		{"not JSON", ok, `jti=a`, 400, "body"},
		{"a duplicate key", ok, `{"jti":"a","jti":"b"}`, 400, "body"},
		{"nothing named", ok, `{}`, 400, "body"},
		{"two kinds", ok, `{"jti":"a","widget":"w"}`, 400, "body"},
		{"a subject without its issuer", ok, `{"subject":"s"}`, 400, "issuer"},
		{"an issuer with a jti", ok, `{"jti":"a","issuer":"known"}`, 400, "issuer"},
		{"an unknown field", ok, `{"jti":"a","why":"x"}`, 400, "why"},
		{"a number", ok, `{"jti":1}`, 400, "jti"},
		{"an untrusted issuer", ok, `{"subject":"s","issuer":"other"}`, 400, "issuer"},
		{"too long", ok, `{"jti":"` + strings.Repeat("a", 2000) + `"}`, 400, "jti"},
	} {
		status, m := post(c.auth, c.body)
		if status != c.status || (c.field != "" && m["field"] != c.field) {
			t.Errorf("%s: %d %v, want %d field %q", c.name, status, m, c.status, c.field)
		}
	}
	status, m := post(ok, `{"subject":"s-1","issuer":"known"}`)
	if status != 200 || m["kind"] != "subject" || m["until"] != now.Add(2*time.Hour+time.Second).UTC().Format(time.RFC3339) {
		t.Fatalf("a revocation answered %d %v", status, m)
	}
	// In force, on the store's clock (the route's).
	hit, err := store.Revoked(context.Background(), state.TokenRef{Issuer: "known", Subject: "s-1"})
	if err != nil || !hit {
		t.Fatalf("the revoked subject: %v %v", hit, err)
	}
	revs = brokenRevoke{store}
	if status, m := post(ok, `{"jti":"j"}`); status != 503 || m["error"] != ReasonStateUnavailable {
		t.Fatalf("store down: %d %v", status, m)
	}
	token = ""
	if status, _ := post(ok, `{"jti":"j"}`); status != 404 {
		t.Fatalf("route off: %d", status)
	}
}
