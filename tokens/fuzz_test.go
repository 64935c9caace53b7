package tokens

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

var vfKnownCodes = map[string]bool{
	CodeMissing: true, CodeMalformed: true, CodeTooLarge: true, CodeUntrustedIssuer: true,
	CodeBadAlgorithm: true, CodeBadHeader: true, CodeBadSignature: true, CodeUnknownKey: true,
	CodeKeysUnavailable: true, CodeExpired: true, CodeNotYetValid: true, CodeBadAudience: true,
	CodeBadClaims: true, CodeRevoked: true, CodeWrongKind: true,
}

// vfCheckError fails unless err is an *Error with a stable code.
func vfCheckError(t *testing.T, err error) {
	t.Helper()
	var te *Error
	if !errors.As(err, &te) {
		t.Fatalf("error %T %v is not *Error", err, err)
	}
	if !vfKnownCodes[te.Code] {
		t.Fatalf("unknown code %q", te.Code)
	}
}

// FuzzStrictParse: the strict parser never panics, fails only with a
// stable code, and what it accepts is canonical: every segment is the one
// base64url text of its bytes, the header passed its rules.
func FuzzStrictParse(f *testing.F) {
	for _, s := range vfFuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := parseJWT(raw, DefaultMaxTokenSize)
		if err != nil {
			vfCheckError(t, err)
			return
		}
		segs := strings.Split(raw, ".")
		if len(segs) != 3 {
			t.Fatalf("accepted %d segments", len(segs))
		}
		header, _ := base64.RawURLEncoding.DecodeString(segs[0])
		for i, b := range [][]byte{header, p.payload, p.signature} {
			if enc := base64.RawURLEncoding.EncodeToString(b); enc != segs[i] {
				t.Fatalf("segment %d is not canonical: %q decodes to what encodes as %q", i, segs[i], enc)
			}
		}
		if p.signingInput != segs[0]+"."+segs[1] {
			t.Fatal("signing input is not the first two segments")
		}
		if p.alg == "" || strings.EqualFold(p.alg, "none") {
			t.Fatalf("accepted alg %q", p.alg)
		}
		for _, name := range []string{"jku", "jwk", "x5u", "x5c", "crit", "cty", "enc", "zip", "b64"} {
			if _, ok := p.header[name]; ok {
				t.Fatalf("accepted header %s", name)
			}
		}
		for _, name := range dateClaims {
			if v, ok := p.claims[name]; ok {
				if _, ok := v.(json.Number); !ok {
					t.Fatalf("accepted %s of type %T", name, v)
				}
			}
		}
	})
}

// FuzzVerify: Verify never panics and fails only with a stable code; what
// it accepts has a kind, a subject and an issuer it trusts.
func FuzzVerify(f *testing.F) {
	for _, s := range vfFuzzSeeds(f) {
		f.Add(s)
	}
	v := vfFuzzVerifier(f)
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := v.Verify(context.Background(), raw)
		if err != nil {
			vfCheckError(t, err)
			return
		}
		if tok.Kind == "" || tok.Subject == "" || v.byIss[tok.Issuer] == nil {
			t.Fatalf("accepted a token without kind, subject or trusted issuer: %+v", tok)
		}
		if _, err := v.VerifyKind(context.Background(), raw, KindGuest, KindAccess); err != nil {
			vfCheckError(t, err)
		}
	})
}

// vfFuzzKeys are fixed keys, so that committed seeds keep verifying: the
// Wycheproof RS256 and ES256 private keys (committed test vectors) and a
// fixed guest secret.
type vfFuzzKeyset struct {
	rsa, ec jwk.Key
	guest   []byte
}

var vfFuzzKeysOnce = sync.OnceValues(func() (*vfFuzzKeyset, error) {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "wycheproof", "json_web_signature_test.json"))
	if err != nil {
		return nil, err
	}
	var file wycheproofFile
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, err
	}
	k := &vfFuzzKeyset{guest: []byte("guestgate fuzz guest secret, 32+ bytes long")}
	for _, g := range file.TestGroups {
		if g.Private == nil {
			continue
		}
		key, err := jwk.ParseKey(g.Private)
		if err != nil {
			continue
		}
		switch {
		case key.KeyID() == "RS256_2048" && k.rsa == nil:
			k.rsa = key
		case key.KeyID() == "kid-ec-sign" && key.Algorithm().String() == "ES256" && k.ec == nil:
			k.ec = key
		}
	}
	if k.rsa == nil || k.ec == nil {
		return nil, fmt.Errorf("wycheproof keys not found")
	}
	return k, nil
})

func vfFuzzVerifier(t testing.TB) *Verifier {
	k, err := vfFuzzKeysOnce()
	if err != nil {
		t.Fatal(err)
	}
	public := func(priv jwk.Key) jwk.Set {
		pub, err := priv.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		set := jwk.NewSet()
		_ = set.AddKey(pub)
		return set
	}
	v, err := New(context.Background(), Config{
		Issuers: []Issuer{
			{Name: "anon-pool", Kind: KindXBSAnonymous, Issuer: vfXBSIss, Audiences: []string{vfXBSAud}, AssertsBindingClaims: true,
				PublicKeys: public(k.rsa), Regular: &Regular{AuthorizationTypes: []string{"SSO"}}},
			{Name: "partner", Kind: KindGuest, Issuer: vfGuestIss, GuestSecret: base64.StdEncoding.EncodeToString(k.guest)},
			{Name: "sat", Kind: KindSecureAnonymous, Issuer: vfSATIss, Audiences: []string{vfSATAud}, PublicKeys: public(k.ec)},
			{Name: "access", Kind: KindAccess, Issuer: vfAccessIss, Audiences: []string{vfAccessAud}, PublicKeys: public(k.ec)},
		},
		Now: func() time.Time { return vfStart },
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// vfFuzzSeeds are valid tokens of every kind under the fuzz keys and the
// fixed clock, and a few near misses.
func vfFuzzSeeds(t testing.TB) []string {
	k, err := vfFuzzKeysOnce()
	if err != nil {
		t.Fatal(err)
	}
	f := &vfFixture{clock: &vfClock{}}
	f.clock.Set(vfStart)
	rsaKid, ecKid := k.rsa.KeyID(), k.ec.KeyID()
	xbs := vfWith(f.xbsClaims(), "custom:entry", "kite", "custom:channel_id", "support-1")
	access := vfClaims{
		"iss": vfAccessIss, "aud": vfAccessAud, "sub": GuestPersonID(vfGuestIss, "u-1"), "name": "Ada",
		"scope": "messaging calling people", "guest_iss": vfGuestIss, "guest_sub": "u-1",
		"gen": SecretGeneration(k.guest), "iat": f.unix(0), "exp": f.unix(6 * time.Hour), "jti": "a1",
	}
	seeds := []string{
		vfSign(t, jwa.RS256, k.rsa, map[string]any{"alg": "RS256", "kid": rsaKid}, xbs),
		vfSign(t, jwa.RS256, k.rsa, map[string]any{"alg": "RS256", "kid": rsaKid, "typ": "JWT"},
			vfWith(f.xbsClaims(), "custom:authorization_type", "SSO", "custom:wid", nil)),
		vfSign(t, jwa.HS256, k.guest, map[string]any{"alg": "HS256", "typ": "JWT"}, f.guestClaims()),
		vfSign(t, jwa.ES256, k.ec, map[string]any{"alg": "ES256", "typ": "sat+jwt", "kid": ecKid}, f.satClaims()),
		vfSign(t, jwa.ES256, k.ec, map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": ecKid}, access),
		vfSign(t, "", nil, map[string]any{"alg": "none"}, f.guestClaims()),
		vfSign(t, jwa.HS256, k.guest, `{"alg":"HS256","typ":"JWT","alg":"none"}`, f.guestClaims()),
		vfSign(t, jwa.HS256, k.guest, map[string]any{"alg": "HS256", "typ": "JWT", "crit": []string{"exp"}}, f.guestClaims()),
		vfSign(t, jwa.HS256, k.guest, map[string]any{"alg": "HS256", "typ": "JWT"}, `{"sub":"a","exp":"1750003600","iss":"`+vfGuestIss+`"}`),
		"a.b.c.d.e",
		"eyJhbGciOiJIUzI1NiJ9.e30=.",
	}
	return seeds
}

// TestFuzzSeedCorpusIsCommitted checks that the seed corpus is committed
// under testdata/fuzz. With GUESTGATE_WRITE_FUZZ_SEEDS=1 it writes the
// seeds there instead (the regression entries beside them stay).
func TestFuzzSeedCorpusIsCommitted(t *testing.T) {
	write := os.Getenv("GUESTGATE_WRITE_FUZZ_SEEDS") == "1"
	for _, target := range []string{"FuzzStrictParse", "FuzzVerify"} {
		dir := filepath.Join("testdata", "fuzz", target)
		if !write {
			entries, err := os.ReadDir(dir)
			if err != nil || len(entries) == 0 {
				t.Fatalf("no committed seed corpus in %s (GUESTGATE_WRITE_FUZZ_SEEDS=1 writes it)", dir)
			}
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range vfFuzzSeeds(t) {
			body := fmt.Sprintf("go test fuzz v1\nstring(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestFuzzSeedsOfEveryKindVerify keeps the seed corpus meaningful: its
// first five seeds are valid tokens of every kind, so the fuzzer starts
// from inputs that reach the claim checks.
func TestFuzzSeedsOfEveryKindVerify(t *testing.T) {
	v := vfFuzzVerifier(t)
	defer v.Close()
	want := []Kind{KindXBSAnonymous, KindRegular, KindGuest, KindSecureAnonymous, KindAccess}
	for i, s := range vfFuzzSeeds(t)[:len(want)] {
		tok, err := v.Verify(context.Background(), s)
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		if tok.Kind != want[i] {
			t.Fatalf("seed %d: kind %s, want %s", i, tok.Kind, want[i])
		}
	}
}
