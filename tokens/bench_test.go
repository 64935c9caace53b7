package tokens

import (
	"context"
	"testing"
)

// BenchmarkVerify measures a verification per kind: "miss" with the cache
// off (strict parse, signature, claims), "hit" answered from the cache.
func BenchmarkVerify(b *testing.B) {
	f := newVFFixture(b)
	tokens := []struct {
		name string
		raw  string
	}{
		{"xbs_RS256", f.xbs(b, vfWith(f.xbsClaims(), "custom:entry", "kite", "custom:channel_id", "support-1"))},
		{"guest_HS256", f.guest(b, f.guestClaims())},
		{"sat_ES256", f.sat(b, f.satClaims())},
		{"access_ES256", f.access(b, f.accessClaims(b))},
	}
	uncached := f.verifier(b, func(c *Config) { c.CacheSize = -1 })
	cached := f.verifier(b)
	ctx := context.Background()
	for _, tt := range tokens {
		b.Run(tt.name+"/miss", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := uncached.Verify(ctx, tt.raw); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tt.name+"/hit", func(b *testing.B) {
			if _, err := cached.Verify(ctx, tt.raw); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := cached.Verify(ctx, tt.raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStrictParse measures the strict parser alone on an XBS token,
// the largest kind.
func BenchmarkStrictParse(b *testing.B) {
	f := newVFFixture(b)
	raw := f.xbs(b, vfWith(f.xbsClaims(), "custom:entry", "kite", "custom:channel_id", "support-1"))
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseJWT(raw, DefaultMaxTokenSize); err != nil {
			b.Fatal(err)
		}
	}
}
