package state

import (
	"fmt"
	"testing"
	"time"
)

// benchStores opens one store per backend on a fixed clock (so Require
// never has an idle expiry to rewrite: the common case of a Check).
func benchStores(b *testing.B) map[string]Store {
	clock := newClock()
	// A long timeout: the setup of BenchmarkRevoked writes in a row.
	opts := Options{Now: clock.Now, Timeout: time.Minute}
	stores := map[string]Store{
		BackendEmbedded: testEmbedded(b, Options{Dir: b.TempDir(), Now: clock.Now, Timeout: time.Minute}),
	}
	// Redis syncs its log once a second, as production Redis usually does
	// (the tests sync every write, to survive their restarts).
	if srv, err := launchRedis(b, "--appendfsync", "everysec"); err == nil {
		stores[BackendRedis] = srv.client(b, opts, redisHooks{noPoll: true})
	} else {
		b.Log(err)
	}
	return stores
}

func BenchmarkRequire(b *testing.B) {
	for _, name := range []string{BackendEmbedded, BackendRedis} {
		b.Run(name, func(b *testing.B) {
			s, ok := benchStores(b)[name]
			if !ok {
				b.Skip("no redis-server")
			}
			if _, err := s.Claim(ctx, "c1", alice, idle, 1); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if got, err := s.Require(ctx, "c1", alice, idle); err != nil || got != Yours {
					b.Fatalf("Require = %v, %v", got, err)
				}
			}
		})
	}
}

// BenchmarkClaim claims a new channel for a new owner each time: a write,
// synced to the file on embedded.
func BenchmarkClaim(b *testing.B) {
	for _, name := range []string{BackendEmbedded, BackendRedis} {
		b.Run(name, func(b *testing.B) {
			s, ok := benchStores(b)[name]
			if !ok {
				b.Skip("no redis-server")
			}
			i := 0
			for b.Loop() {
				i++
				o := Owner{Issuer: alice.Issuer, Subject: fmt.Sprint("v", i), Widget: alice.Widget}
				if got, err := s.Claim(ctx, fmt.Sprint("c", i), o, idle, 1); err != nil || got != Claimed {
					b.Fatalf("Claim = %v, %v", got, err)
				}
			}
		})
	}
}

func BenchmarkRevoked(b *testing.B) {
	for _, name := range []string{BackendEmbedded, BackendRedis} {
		b.Run(name, func(b *testing.B) {
			s, ok := benchStores(b)[name]
			if !ok {
				b.Skip("no redis-server")
			}
			for i := range 1000 {
				r := Revocation{Kind: RevokeToken, Value: fmt.Sprint("jti-", i), Until: epoch.Add(time.Hour)}
				if err := s.Revoke(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
			tok := TokenRef{ID: "jti-x", Issuer: alice.Issuer, Subject: alice.Subject, Widget: alice.Widget}
			for b.Loop() {
				if got, err := s.Revoked(ctx, tok); err != nil || got {
					b.Fatalf("Revoked = %v, %v", got, err)
				}
			}
		})
	}
}
