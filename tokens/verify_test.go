package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/guestgate/guestgate/internal/memo"
)

// The fixture of the verifier tests: one issuer of every kind, keys made
// once per test binary, and a clock the tests move.
const (
	vfXBSIss     = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Anon"
	vfXBSAud     = "anon-client"
	vfRegularIss = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Users"
	vfRegularAud = "users-client"
	vfGuestIss   = "Y2lzY29zcGFyazovL3VzL09SR0FOSVpBVElPTi9ndWVzdC1pc3N1ZXI"
	vfSATIss     = "https://guestgate.test/sat"
	vfSATAud     = "launchpad"
	vfAccessIss  = "https://guestgate.test/access"
	vfAccessAud  = "chat-api"
	vfRSAKid     = "rsa-1"
	vfSATKid     = "sat-1"
	vfAccessKid  = "access-1"
)

// vfStart is the fixture's "now": every token is made relative to it.
var vfStart = time.Unix(1_750_000_000, 0)

type vfKeys struct {
	rsa       *rsa.PrivateKey
	sat       *ecdsa.PrivateKey
	access    *ecdsa.PrivateKey
	guest     []byte // decoded guest secret
	guestB64  string // the secret as handed out
	guest2B64 string // a rotated secret
}

var (
	vfKeysOnce sync.Once
	vfKeysVal  *vfKeys
)

func vfTestKeys(t testing.TB) *vfKeys {
	t.Helper()
	vfKeysOnce.Do(func() {
		k := &vfKeys{}
		var err error
		if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if k.sat, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if k.access, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		k.guest = make([]byte, 32)
		rand.Read(k.guest)
		k.guestB64 = base64.StdEncoding.EncodeToString(k.guest)
		rotated := make([]byte, 32)
		rand.Read(rotated)
		k.guest2B64 = base64.StdEncoding.EncodeToString(rotated)
		vfKeysVal = k
	})
	return vfKeysVal
}

// vfPublicSet is a JWKS of pub with kid and alg set, as an issuer publishes.
func vfPublicSet(t testing.TB, pub any, kid string, alg jwa.SignatureAlgorithm) jwk.Set {
	t.Helper()
	k, err := jwk.FromRaw(pub)
	if err != nil {
		t.Fatal(err)
	}
	_ = k.Set(jwk.KeyIDKey, kid)
	_ = k.Set(jwk.AlgorithmKey, alg)
	_ = k.Set(jwk.KeyUsageKey, "sig")
	set := jwk.NewSet()
	_ = set.AddKey(k)
	return set
}

// vfClock is a clock the tests set and move.
type vfClock struct{ unix atomic.Int64 }

func (c *vfClock) Now() time.Time          { return time.Unix(c.unix.Load(), 0) }
func (c *vfClock) Set(t time.Time)         { c.unix.Store(t.Unix()) }
func (c *vfClock) Advance(d time.Duration) { c.unix.Add(int64(d / time.Second)) }

type vfFixture struct {
	keys  *vfKeys
	clock *vfClock
}

func newVFFixture(t testing.TB) *vfFixture {
	f := &vfFixture{keys: vfTestKeys(t), clock: &vfClock{}}
	f.clock.Set(vfStart)
	return f
}

func (f *vfFixture) config(t testing.TB) Config {
	return Config{
		Issuers: []Issuer{
			{Name: "anon-pool", Kind: KindXBSAnonymous, Issuer: vfXBSIss, Audiences: []string{vfXBSAud}, AssertsBindingClaims: true,
				PublicKeys: vfPublicSet(t, &f.keys.rsa.PublicKey, vfRSAKid, jwa.RS256)},
			{Name: "user-pool", Kind: KindXBSAnonymous, Issuer: vfRegularIss, Audiences: []string{vfRegularAud, "other-client"},
				PublicKeys: vfPublicSet(t, &f.keys.rsa.PublicKey, vfRSAKid, jwa.RS256),
				Regular:    &Regular{AuthorizationTypes: []string{"SSO"}}},
			{Name: "partner", Kind: KindGuest, Issuer: vfGuestIss, GuestSecret: f.keys.guestB64},
			{Name: "sat", Kind: KindSecureAnonymous, Issuer: vfSATIss, Audiences: []string{vfSATAud},
				PublicKeys: vfPublicSet(t, &f.keys.sat.PublicKey, vfSATKid, jwa.ES256)},
			{Name: "access", Kind: KindAccess, Issuer: vfAccessIss, Audiences: []string{vfAccessAud},
				PublicKeys: vfPublicSet(t, &f.keys.access.PublicKey, vfAccessKid, jwa.ES256)},
		},
		Now: f.clock.Now,
	}
}

func (f *vfFixture) verifier(t testing.TB, edit ...func(*Config)) *Verifier {
	t.Helper()
	cfg := f.config(t)
	for _, e := range edit {
		e(&cfg)
	}
	v, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// vfSign builds a compact JWS from header and payload exactly as given
// (a string is used verbatim, anything else is JSON-encoded), signed with
// key under alg; alg "" leaves the signature empty.
func vfSign(t testing.TB, alg jwa.SignatureAlgorithm, key any, header, payload any) string {
	t.Helper()
	enc := func(v any) string {
		if s, ok := v.(string); ok {
			return base64.RawURLEncoding.EncodeToString([]byte(s))
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(header) + "." + enc(payload)
	if alg == "" {
		return input + "."
	}
	signer, err := jws.NewSigner(alg)
	if err != nil {
		t.Fatal(err)
	}
	// In low-S form, as the verifier takes them (TestHighSSignaturesAreRefused).
	if jk, ok := key.(jwk.Key); ok && jk.KeyType() == jwa.EC {
		var raw ecdsa.PrivateKey
		if err := jk.Raw(&raw); err != nil {
			t.Fatal(err)
		}
		key = &raw
	}
	if k, ok := key.(*ecdsa.PrivateKey); ok {
		key = lowSSigner{k}
	}
	sig, err := signer.Sign([]byte(input), key)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

type vfClaims = map[string]any

func vfWith(base vfClaims, kv ...any) vfClaims {
	out := maps.Clone(base)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func (f *vfFixture) unix(d time.Duration) int64 { return f.clock.Now().Add(d).Unix() }

// xbsClaims are an external pool's widget token.
func (f *vfFixture) xbsClaims() vfClaims {
	return vfClaims{
		"sub": "5f1c2a9e-8c1e-4a57-9d0c-0d7f2b3e4c5d", "iss": vfXBSIss, "aud": vfXBSAud,
		"token_use": "id", "custom:authorization_type": "XBS_ANONYMOUS", "custom:wid": "W-DEMO",
		"name": "guest", "email": "anonymous-w-demo@anonymous.example.com", "email_verified": false,
		"auth_time": f.unix(0), "iat": f.unix(0), "exp": f.unix(time.Hour), "jti": "j1",
		"cognito:username": "5f1c2a9e-8c1e-4a57-9d0c-0d7f2b3e4c5d",
	}
}

func (f *vfFixture) xbs(t testing.TB, c vfClaims) string {
	return vfSign(t, jwa.RS256, f.keys.rsa, map[string]any{"alg": "RS256", "kid": vfRSAKid}, c)
}

func (f *vfFixture) regularClaims() vfClaims {
	c := vfWith(f.xbsClaims(), "iss", vfRegularIss, "aud", vfRegularAud, "custom:authorization_type", nil, "custom:wid", nil)
	c["name"], c["email"] = "Ada Lovelace", "ada@example.com"
	return c
}

func (f *vfFixture) guestClaims() vfClaims {
	return vfClaims{"sub": "partner-user-42", "name": "Ada", "iss": vfGuestIss, "exp": f.unix(time.Hour)}
}

func (f *vfFixture) guest(t testing.TB, c vfClaims) string {
	return vfSign(t, jwa.HS256, f.keys.guest, map[string]any{"alg": "HS256", "typ": "JWT"}, c)
}

func (f *vfFixture) satClaims() vfClaims {
	return vfClaims{
		"iss": vfSATIss, "aud": vfSATAud, "sub": "0b8e2f0c-3f6e-4b7e-a1d2-9c8b7a6f5e4d",
		"iat": f.unix(0), "exp": f.unix(time.Hour), "jti": "s1", "role": "launchpad_user",
		"scope": "launchpads/lp-123", "account_id": "acct-1", "provider_id": "prov-1",
		"metadata": map[string]any{"team": "blue"},
	}
}

func (f *vfFixture) sat(t testing.TB, c vfClaims) string {
	return vfSign(t, jwa.ES256, f.keys.sat, map[string]any{"alg": "ES256", "typ": "sat+jwt", "kid": vfSATKid}, c)
}

func (f *vfFixture) accessClaims(t testing.TB) vfClaims {
	gen := SecretGeneration(f.keys.guest)
	return vfClaims{
		"iss": vfAccessIss, "aud": vfAccessAud, "sub": GuestPersonID(vfGuestIss, "partner-user-42"),
		"name": "Ada", "scope": "messaging calling people", "guest_iss": vfGuestIss,
		"guest_sub": "partner-user-42", "gen": gen, "iat": f.unix(0), "exp": f.unix(6 * time.Hour), "jti": "a1",
	}
}

func (f *vfFixture) access(t testing.TB, c vfClaims) string {
	return vfSign(t, jwa.ES256, f.keys.access, map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": vfAccessKid}, c)
}

// vfCode runs Verify (or VerifyKind with kinds) and returns the stable code.
func vfCode(v *Verifier, raw string, kinds ...Kind) (string, *Token, error) {
	var tok *Token
	var err error
	if kinds == nil {
		tok, err = v.Verify(context.Background(), raw)
	} else {
		tok, err = v.VerifyKind(context.Background(), raw, kinds...)
	}
	if err == nil {
		return "", tok, nil
	}
	return CodeOf(err), nil, err
}

// vfReplaceSegment swaps segment i of a compact token for s.
func vfReplaceSegment(raw string, i int, s string) string {
	parts := strings.Split(raw, ".")
	parts[i] = s
	return strings.Join(parts, ".")
}

// TestEveryKindIsAccepted verifies a well-formed token of every kind and
// the Token fields taken from it.
func TestEveryKindIsAccepted(t *testing.T) {
	f := newVFFixture(t)
	v := f.verifier(t)
	tests := []struct {
		name  string
		raw   string
		kind  Kind
		sub   string
		iss   string
		entry string
		uname string
		email string
	}{
		{"xbs_anonymous from an external pool", f.xbs(t, f.xbsClaims()), KindXBSAnonymous,
			"5f1c2a9e-8c1e-4a57-9d0c-0d7f2b3e4c5d", vfXBSIss, "anon-pool", "guest", "anonymous-w-demo@anonymous.example.com"},
		{"xbs_anonymous kite session", f.xbs(t, vfWith(f.xbsClaims(), "custom:entry", "kite", "custom:channel_id", "support-1")),
			KindXBSAnonymous, "5f1c2a9e-8c1e-4a57-9d0c-0d7f2b3e4c5d", vfXBSIss, "anon-pool", "guest", "anonymous-w-demo@anonymous.example.com"},
		{"xbs_anonymous public link", f.xbs(t, vfWith(f.xbsClaims(), "custom:entry", "public_link", "custom:channel_id", "public-lobby", "custom:wid", nil)),
			KindXBSAnonymous, "5f1c2a9e-8c1e-4a57-9d0c-0d7f2b3e4c5d", vfXBSIss, "anon-pool", "guest", "anonymous-w-demo@anonymous.example.com"},
		{"xbs_anonymous with typ JWT", vfSign(t, jwa.RS256, f.keys.rsa, map[string]any{"alg": "RS256", "kid": vfRSAKid, "typ": "JWT"}, f.xbsClaims()),
			KindXBSAnonymous, "5f1c2a9e-8c1e-4a57-9d0c-0d7f2b3e4c5d", vfXBSIss, "anon-pool", "guest", "anonymous-w-demo@anonymous.example.com"},
		{"xbs_anonymous with aud as an array", f.xbs(t, vfWith(f.xbsClaims(), "aud", []any{"someone-else", vfXBSAud})),
			KindXBSAnonymous, "5f1c2a9e-8c1e-4a57-9d0c-0d7f2b3e4c5d", vfXBSIss, "anon-pool", "guest", "anonymous-w-demo@anonymous.example.com"},
		{"regular without authorization type on an opted-in entry", f.xbs(t, f.regularClaims()), KindRegular,
			"5f1c2a9e-8c1e-4a57-9d0c-0d7f2b3e4c5d", vfRegularIss, "user-pool", "Ada Lovelace", "ada@example.com"},
		{"regular with a listed authorization type", f.xbs(t, vfWith(f.regularClaims(), "custom:authorization_type", "SSO", "aud", "other-client")), KindRegular,
			"5f1c2a9e-8c1e-4a57-9d0c-0d7f2b3e4c5d", vfRegularIss, "user-pool", "Ada Lovelace", "ada@example.com"},
		{"anonymous on an opted-in entry is still xbs_anonymous", f.xbs(t, vfWith(f.xbsClaims(), "iss", vfRegularIss, "aud", vfRegularAud)), KindXBSAnonymous,
			"5f1c2a9e-8c1e-4a57-9d0c-0d7f2b3e4c5d", vfRegularIss, "user-pool", "guest", "anonymous-w-demo@anonymous.example.com"},
		{"guest", f.guest(t, f.guestClaims()), KindGuest, "partner-user-42", vfGuestIss, "partner", "Ada", ""},
		{"guest without name", f.guest(t, vfWith(f.guestClaims(), "name", nil)), KindGuest, "partner-user-42", vfGuestIss, "partner", "", ""},
		{"secure_anonymous", f.sat(t, f.satClaims()), KindSecureAnonymous, "0b8e2f0c-3f6e-4b7e-a1d2-9c8b7a6f5e4d", vfSATIss, "sat", "", ""},
		{"access", f.access(t, f.accessClaims(t)), KindAccess, GuestPersonID(vfGuestIss, "partner-user-42"), vfAccessIss, "access", "Ada", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, tok, err := vfCode(v, tt.raw)
			if err != nil {
				t.Fatalf("rejected: %v (%s)", err, code)
			}
			if tok.Kind != tt.kind || tok.Subject != tt.sub || tok.Issuer != tt.iss || tok.IssuerName != tt.entry ||
				tok.Name != tt.uname || tok.Email != tt.email {
				t.Errorf("token = {%s %q %q %q %q %q}, want {%s %q %q %q %q %q}",
					tok.Kind, tok.Subject, tok.Issuer, tok.IssuerName, tok.Name, tok.Email,
					tt.kind, tt.sub, tt.iss, tt.entry, tt.uname, tt.email)
			}
			exp, _ := tok.Claims()["exp"].(json.Number).Int64()
			if !tok.ExpiresAt.Equal(time.Unix(exp, 0)) {
				t.Errorf("ExpiresAt = %v, want exp %d", tok.ExpiresAt, exp)
			}
			// VerifyKind with the token's own kind accepts it too.
			if _, err := v.VerifyKind(context.Background(), tt.raw, tt.kind); err != nil {
				t.Errorf("VerifyKind(%s): %v", tt.kind, err)
			}
		})
	}
}

// TestRFC8725AttacksAreRejected has one row per rejection the issue lists,
// each with the stable code the policy sees.
func TestRFC8725AttacksAreRejected(t *testing.T) {
	f := newVFFixture(t)
	v := f.verifier(t)
	k := f.keys
	rsaHeader := map[string]any{"alg": "RS256", "kid": vfRSAKid}
	withHeader := func(kv ...any) map[string]any {
		h := maps.Clone(rsaHeader)
		for i := 0; i < len(kv); i += 2 {
			h[kv[i].(string)] = kv[i+1]
		}
		return h
	}
	good := f.xbs(t, f.xbsClaims())
	goodParts := strings.Split(good, ".")

	// Key confusion material: the RSA issuer's public key as an attacker
	// would find it, used as an HMAC secret.
	der, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	pubJWK, err := json.Marshal(vfPublicSet(t, &k.rsa.PublicKey, vfRSAKid, jwa.RS256))
	if err != nil {
		t.Fatal(err)
	}

	// An attacker's own key, embedded in the header.
	attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	attackerJWK, _ := jwk.FromRaw(&attacker.PublicKey)
	attackerJSON, _ := json.Marshal(attackerJWK)
	var attackerMap map[string]any
	_ = json.Unmarshal(attackerJSON, &attackerMap)

	now := f.clock.Now()

	tests := []struct {
		name  string
		raw   string
		kinds []Kind
		want  string
	}{
		// RFC 8725 §2.1 / §3.1: algorithms.
		{"alg none", vfSign(t, "", nil, map[string]any{"alg": "none"}, f.xbsClaims()), nil, CodeBadAlgorithm},
		{"alg None in another case", vfSign(t, "", nil, map[string]any{"alg": "nOnE", "kid": vfRSAKid}, f.xbsClaims()), nil, CodeBadAlgorithm},
		{"alg none with a signature", vfSign(t, jwa.RS256, k.rsa, map[string]any{"alg": "none", "kid": vfRSAKid}, f.xbsClaims()), nil, CodeBadAlgorithm},
		{"alg absent", vfSign(t, jwa.RS256, k.rsa, map[string]any{"kid": vfRSAKid}, f.xbsClaims()), nil, CodeBadAlgorithm},
		{"alg not a string", vfSign(t, jwa.RS256, k.rsa, map[string]any{"alg": 256, "kid": vfRSAKid}, f.xbsClaims()), nil, CodeBadAlgorithm},
		{"alg not on the issuer's allow-list", vfSign(t, jwa.RS384, k.rsa, withHeader("alg", "RS384"), f.xbsClaims()), nil, CodeBadAlgorithm},
		{"alg of another issuer (ES256 at the RS256 pool)", vfSign(t, jwa.ES256, k.sat, withHeader("alg", "ES256"), f.xbsClaims()), nil, CodeBadAlgorithm},
		{"HS256 keyed with the RS256 issuer's public key PEM", vfSign(t, jwa.HS256, pubPEM, withHeader("alg", "HS256"), f.xbsClaims()), nil, CodeBadAlgorithm},
		{"HS256 keyed with the RS256 issuer's public key DER", vfSign(t, jwa.HS256, der, withHeader("alg", "HS256"), f.xbsClaims()), nil, CodeBadAlgorithm},
		{"HS256 keyed with the RS256 issuer's public JWKS", vfSign(t, jwa.HS256, pubJWK, withHeader("alg", "HS256"), f.xbsClaims()), nil, CodeBadAlgorithm},
		{"RS256 at the guest issuer", vfSign(t, jwa.RS256, k.rsa, map[string]any{"alg": "RS256", "typ": "JWT", "kid": vfRSAKid}, f.guestClaims()), nil, CodeBadAlgorithm},

		// RFC 8725 §3.10 and RFC 7515 §4.1: headers that bring their own key.
		{"jku header", f.xbsWithHeader(t, withHeader("jku", "https://attacker.example/jwks.json")), nil, CodeBadHeader},
		{"x5u header", f.xbsWithHeader(t, withHeader("x5u", "https://attacker.example/cert.pem")), nil, CodeBadHeader},
		{"embedded jwk signed by the attacker", vfSign(t, jwa.ES256, attacker, map[string]any{"alg": "ES256", "jwk": attackerMap}, f.xbsClaims()), nil, CodeBadHeader},
		{"embedded jwk with the issuer's alg", f.xbsWithHeader(t, withHeader("jwk", attackerMap)), nil, CodeBadHeader},
		{"x5c header", f.xbsWithHeader(t, withHeader("x5c", []any{base64.StdEncoding.EncodeToString(der)})), nil, CodeBadHeader},
		{"unknown crit", f.xbsWithHeader(t, withHeader("crit", []any{"exp"}, "exp", 1)), nil, CodeBadHeader},
		{"empty crit", f.xbsWithHeader(t, withHeader("crit", []any{})), nil, CodeBadHeader},
		{"b64 false", f.xbsWithHeader(t, withHeader("b64", false)), nil, CodeBadHeader},
		{"nested token (cty JWT)", f.xbsWithHeader(t, withHeader("cty", "JWT")), nil, CodeBadHeader},
		{"enc header", f.xbsWithHeader(t, withHeader("enc", "A256GCM")), nil, CodeBadHeader},
		{"zip header", f.xbsWithHeader(t, withHeader("zip", "DEF")), nil, CodeBadHeader},
		{"kid not a string", f.xbsWithHeader(t, withHeader("kid", 1)), nil, CodeBadHeader},
		{"JWE (five segments)", "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.OKOawDo13gRp2ojaHV7LFpZcgV7T6DVZKTyKOMTYUmKoTCVJRgckCL9kiMT03JGeipsEdY3mx_etLbbWSrFr05kLzcSr4qKAq7YN7e9jwQRb23nfa6c9d-StnImGyFDbSv04uVuxIp5Zms1gNxKKK2Da14B8S4rzVRltdYwam_lDp5XnZAYpQdb76FdIKLaVmqgfwX7XWRxv2322i-vDxRfqNzo_tETKzpVLzfiwQyeyPGLBIO56YJ7eObdv0je81860ppamavo35UgoRdbYaBcoh9QcfylQr66oc6vFWXRcZ_ZT2LawVCWTIy3brGPi6UklfCpIMfIjf7iGdXKHzg.48V1_ALb6US04U3b.5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4vpzs9tX_EFShS8iB7j6jiSdiwkIr3ajwQzaBtQD_A.XFBoMYUZodetZdvTiFvSkQ", nil, CodeMalformed},
		{"typ at+jwt under the xbs issuer", f.xbsWithHeader(t, withHeader("typ", "at+jwt")), nil, CodeBadHeader},
		{"typ sat+jwt under the xbs issuer", f.xbsWithHeader(t, withHeader("typ", "sat+jwt")), nil, CodeBadHeader},

		// Strict parsing before any library.
		{"oversize", f.xbs(t, vfWith(f.xbsClaims(), "pad", strings.Repeat("x", 9000))), nil, CodeTooLarge},
		{"two segments", goodParts[0] + "." + goodParts[1], nil, CodeMalformed},
		{"four segments", good + ".", nil, CodeMalformed},
		{"one segment", goodParts[0], nil, CodeMalformed},
		{"empty", "", nil, CodeMalformed},
		{"padded base64", vfReplaceSegment(good, 2, goodParts[2]+"=="), nil, CodeMalformed},
		{"padded header", vfReplaceSegment(good, 0, base64.URLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"rsa-1"}`))), nil, CodeMalformed},
		{"standard base64 alphabet", vfReplaceSegment(good, 2, strings.NewReplacer("-", "+", "_", "/").Replace(goodParts[2])+"+/"), nil, CodeMalformed},
		{"whitespace in a segment", vfReplaceSegment(good, 1, goodParts[1][:10]+"\n"+goodParts[1][10:]), nil, CodeMalformed},
		{"space in a segment", vfReplaceSegment(good, 1, goodParts[1][:10]+" "+goodParts[1][10:]), nil, CodeMalformed},
		{"non-canonical trailing bits", vfReplaceSegment(good, 0, vfNonCanonical(t, goodParts[0])), nil, CodeMalformed},
		{"duplicate header member", vfSign(t, jwa.RS256, k.rsa, `{"alg":"RS256","kid":"rsa-1","kid":"rsa-2"}`, f.xbsClaims()), nil, CodeMalformed},
		{"duplicate alg, second none", vfSign(t, jwa.RS256, k.rsa, `{"alg":"RS256","kid":"rsa-1","alg":"none"}`, f.xbsClaims()), nil, CodeMalformed},
		{"duplicate payload member", vfSign(t, jwa.RS256, k.rsa, rsaHeader, vfJSONWithDuplicate(t, f.xbsClaims(), `"sub":"someone-else"`)), nil, CodeMalformed},
		{"duplicate payload member spelled with an escape", vfSign(t, jwa.RS256, k.rsa, rsaHeader, vfJSONWithDuplicate(t, f.xbsClaims(), `"\u0073ub":"x"`)), nil, CodeMalformed},
		{"duplicate member nested in the payload", vfSign(t, jwa.RS256, k.rsa, rsaHeader, vfJSONWithDuplicate(t, f.xbsClaims(), `"extra":{"a":1,"a":2}`)), nil, CodeMalformed},
		{"header an array", vfSign(t, jwa.RS256, k.rsa, `[{"alg":"RS256"}]`, f.xbsClaims()), nil, CodeMalformed},
		{"header a string", vfSign(t, jwa.RS256, k.rsa, `"RS256"`, f.xbsClaims()), nil, CodeMalformed},
		{"payload an array", vfSign(t, jwa.RS256, k.rsa, rsaHeader, `[1,2]`), nil, CodeMalformed},
		{"payload a number", vfSign(t, jwa.RS256, k.rsa, rsaHeader, `42`), nil, CodeMalformed},
		{"payload a string", vfSign(t, jwa.RS256, k.rsa, rsaHeader, `"claims"`), nil, CodeMalformed},
		{"payload not JSON", vfSign(t, jwa.RS256, k.rsa, rsaHeader, `{"sub":`), nil, CodeMalformed},
		{"data after the payload object", vfSign(t, jwa.RS256, k.rsa, rsaHeader, vfJSON(t, f.xbsClaims())+` {}`), nil, CodeMalformed},
		{"payload not UTF-8", vfSign(t, jwa.RS256, k.rsa, rsaHeader, "{\"sub\":\"\xff\"}"), nil, CodeMalformed},

		// Signature and keys.
		{"signature of another token", vfReplaceSegment(good, 2, strings.Split(f.xbs(t, vfWith(f.xbsClaims(), "jti", "j2")), ".")[2]), nil, CodeBadSignature},
		{"payload changed after signing", vfReplaceSegment(good, 1, base64.RawURLEncoding.EncodeToString([]byte(vfJSON(t, vfWith(f.xbsClaims(), "custom:wid", "W-OTHER"))))), nil, CodeBadSignature},
		{"empty signature", vfReplaceSegment(good, 2, ""), nil, CodeBadSignature},
		{"unknown kid", f.xbsWithHeader(t, withHeader("kid", "rsa-9")), nil, CodeUnknownKey},
		{"kid absent", f.xbsWithHeader(t, map[string]any{"alg": "RS256"}), nil, CodeUnknownKey},
		{"SAT signed with the access key", vfSign(t, jwa.ES256, k.access, map[string]any{"alg": "ES256", "typ": "sat+jwt", "kid": vfSATKid}, f.satClaims()), nil, CodeBadSignature},

		// RFC 7519 §4.1 registered claims.
		{"iss absent", f.xbs(t, vfWith(f.xbsClaims(), "iss", nil)), nil, CodeUntrustedIssuer},
		{"iss of nobody we trust", f.xbs(t, vfWith(f.xbsClaims(), "iss", "https://attacker.example")), nil, CodeUntrustedIssuer},
		{"iss not a string", f.xbs(t, vfWith(f.xbsClaims(), "iss", []any{vfXBSIss})), nil, CodeUntrustedIssuer},
		{"iss differing in case", f.xbs(t, vfWith(f.xbsClaims(), "iss", strings.ToUpper(vfXBSIss))), nil, CodeUntrustedIssuer},
		{"aud absent", f.xbs(t, vfWith(f.xbsClaims(), "aud", nil)), nil, CodeBadAudience},
		{"aud of another client", f.xbs(t, vfWith(f.xbsClaims(), "aud", "other-client")), nil, CodeBadAudience},
		{"aud array without ours", f.xbs(t, vfWith(f.xbsClaims(), "aud", []any{"a", "b"})), nil, CodeBadAudience},
		{"aud empty array", f.xbs(t, vfWith(f.xbsClaims(), "aud", []any{})), nil, CodeBadAudience},
		{"aud a number", f.xbs(t, vfWith(f.xbsClaims(), "aud", 7)), nil, CodeBadAudience},
		{"SAT with the access audience", f.sat(t, vfWith(f.satClaims(), "aud", vfAccessAud)), nil, CodeBadAudience},
		{"exp absent", f.xbs(t, vfWith(f.xbsClaims(), "exp", nil)), nil, CodeBadClaims},
		{"exp a string", f.xbs(t, vfWith(f.xbsClaims(), "exp", "1750003600")), nil, CodeBadClaims},
		{"exp null", f.xbs(t, vfWith(f.xbsClaims(), "exp", json.RawMessage("null"))), nil, CodeBadClaims},
		{"nbf a string", f.xbs(t, vfWith(f.xbsClaims(), "nbf", "0")), nil, CodeBadClaims},
		{"exp beyond year 9999", f.xbs(t, vfWith(f.xbsClaims(), "exp", json.Number("1e300"))), nil, CodeBadClaims},
		{"expired beyond the leeway", f.xbs(t, vfWith(f.xbsClaims(), "exp", now.Add(-61*time.Second).Unix(), "iat", now.Add(-time.Hour).Unix())), nil, CodeExpired},
		{"expired exactly at the leeway", f.xbs(t, vfWith(f.xbsClaims(), "exp", now.Add(-60*time.Second).Unix())), nil, CodeExpired},
		{"nbf beyond the leeway", f.xbs(t, vfWith(f.xbsClaims(), "nbf", now.Add(61*time.Second).Unix())), nil, CodeNotYetValid},
		{"iat beyond the leeway", f.xbs(t, vfWith(f.xbsClaims(), "iat", now.Add(2*time.Minute).Unix())), nil, CodeNotYetValid},

		// xbs_anonymous and regular.
		{"XBS token_use access", f.xbs(t, vfWith(f.xbsClaims(), "token_use", "access")), nil, CodeBadClaims},
		{"XBS token_use absent", f.xbs(t, vfWith(f.xbsClaims(), "token_use", nil)), nil, CodeBadClaims},
		{"XBS sub absent", f.xbs(t, vfWith(f.xbsClaims(), "sub", nil)), nil, CodeBadClaims},
		{"XBS without custom:wid", f.xbs(t, vfWith(f.xbsClaims(), "custom:wid", nil)), nil, CodeBadClaims},
		{"unknown custom:authorization_type", f.xbs(t, vfWith(f.xbsClaims(), "custom:authorization_type", "XBS_ADMIN")), nil, CodeBadClaims},
		{"no custom:authorization_type where regular is not opted in", f.xbs(t, vfWith(f.xbsClaims(), "custom:authorization_type", nil)), nil, CodeBadClaims},
		{"authorization type not on the regular list", f.xbs(t, vfWith(f.regularClaims(), "custom:authorization_type", "XBS_ADMIN")), nil, CodeBadClaims},
		{"custom:authorization_type not a string", f.xbs(t, vfWith(f.xbsClaims(), "custom:authorization_type", []any{"XBS_ANONYMOUS"})), nil, CodeBadClaims},
		{"link token without custom:channel_id", f.xbs(t, vfWith(f.xbsClaims(), "custom:entry", "public_link", "custom:wid", nil)), nil, CodeBadClaims},
		{"link token with a widget", f.xbs(t, vfWith(f.xbsClaims(), "custom:entry", "public_link", "custom:channel_id", "public-lobby")), nil, CodeBadClaims},
		{"kite token without custom:channel_id", f.xbs(t, vfWith(f.xbsClaims(), "custom:entry", "kite")), nil, CodeBadClaims},
		{"kite token without custom:wid", f.xbs(t, vfWith(f.xbsClaims(), "custom:entry", "kite", "custom:channel_id", "support-1", "custom:wid", nil)), nil, CodeBadClaims},
		{"unknown custom:entry", f.xbs(t, vfWith(f.xbsClaims(), "custom:entry", "backdoor", "custom:channel_id", "support-1")), nil, CodeBadClaims},
		{"name not a string", f.xbs(t, vfWith(f.xbsClaims(), "name", 1)), nil, CodeBadClaims},

		// guest.
		{"guest sub with a space", f.guest(t, vfWith(f.guestClaims(), "sub", "partner user")), nil, CodeBadClaims},
		{"guest sub with an underscore", f.guest(t, vfWith(f.guestClaims(), "sub", "partner_user")), nil, CodeBadClaims},
		{"guest sub with a non-ASCII letter", f.guest(t, vfWith(f.guestClaims(), "sub", "partnér")), nil, CodeBadClaims},
		{"guest sub absent", f.guest(t, vfWith(f.guestClaims(), "sub", nil)), nil, CodeBadClaims},
		{"guest sub a number", f.guest(t, vfWith(f.guestClaims(), "sub", 42)), nil, CodeBadClaims},
		{"guest exp absent", f.guest(t, vfWith(f.guestClaims(), "exp", nil)), nil, CodeBadClaims},
		{"guest exp a string", f.guest(t, vfWith(f.guestClaims(), "exp", "1750003600")), nil, CodeBadClaims},
		{"guest exp beyond the max lifetime", f.guest(t, vfWith(f.guestClaims(), "exp", f.unix(25*time.Hour+2*time.Minute))), nil, CodeBadClaims},
		{"guest name not a string", f.guest(t, vfWith(f.guestClaims(), "name", map[string]any{})), nil, CodeBadClaims},
		{"guest typ jwt in lower case", vfSign(t, jwa.HS256, k.guest, map[string]any{"alg": "HS256", "typ": "jwt"}, f.guestClaims()), nil, CodeBadHeader},
		{"guest typ absent", vfSign(t, jwa.HS256, k.guest, map[string]any{"alg": "HS256"}, f.guestClaims()), nil, CodeBadHeader},
		{"guest typ at+jwt", vfSign(t, jwa.HS256, k.guest, map[string]any{"alg": "HS256", "typ": "at+jwt"}, f.guestClaims()), nil, CodeBadHeader},
		{"guest signed with the secret text, not its bytes", vfSign(t, jwa.HS256, []byte(k.guestB64), map[string]any{"alg": "HS256", "typ": "JWT"}, f.guestClaims()), nil, CodeBadSignature},

		// secure_anonymous.
		{"SAT typ JWT", vfSign(t, jwa.ES256, k.sat, map[string]any{"alg": "ES256", "typ": "JWT", "kid": vfSATKid}, f.satClaims()), nil, CodeBadHeader},
		{"SAT without role", f.sat(t, vfWith(f.satClaims(), "role", nil)), nil, CodeBadClaims},
		{"SAT without scope", f.sat(t, vfWith(f.satClaims(), "scope", nil)), nil, CodeBadClaims},
		{"SAT without account_id", f.sat(t, vfWith(f.satClaims(), "account_id", nil)), nil, CodeBadClaims},
		{"SAT metadata not an object", f.sat(t, vfWith(f.satClaims(), "metadata", "x")), nil, CodeBadClaims},

		// access.
		{"access typ sat+jwt", vfSign(t, jwa.ES256, k.access, map[string]any{"alg": "ES256", "typ": "sat+jwt", "kid": vfAccessKid}, f.accessClaims(t)), nil, CodeBadHeader},
		{"access without gen", f.access(t, vfWith(f.accessClaims(t), "gen", nil)), nil, CodeBadClaims},
		{"access without guest_iss", f.access(t, vfWith(f.accessClaims(t), "guest_iss", nil)), nil, CodeBadClaims},
		{"access with a sub not the guest's person id", f.access(t, vfWith(f.accessClaims(t), "sub", GuestPersonID(vfGuestIss, "someone-else"))), nil, CodeBadClaims},
		{"access of a guest issuer no longer configured", f.access(t, vfWith(f.accessClaims(t), "guest_iss", "gone", "sub", GuestPersonID("gone", "partner-user-42"))), nil, CodeRevoked},
		{"access with an old generation", f.access(t, vfWith(f.accessClaims(t), "gen", "stale-generation")), nil, CodeRevoked},

		// One kind where another is expected.
		{"access token where a guest token is expected", f.access(t, f.accessClaims(t)), []Kind{KindGuest}, CodeWrongKind},
		{"guest token where an access token is expected", f.guest(t, f.guestClaims()), []Kind{KindAccess}, CodeWrongKind},
		{"SAT where access is expected", f.sat(t, f.satClaims()), []Kind{KindAccess}, CodeWrongKind},
		{"regular where anonymous is expected", f.xbs(t, f.regularClaims()), []Kind{KindXBSAnonymous}, CodeWrongKind},
		{"no kind is expected", f.guest(t, f.guestClaims()), []Kind{}, CodeWrongKind},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, err := vfCode(v, tt.raw, tt.kinds...)
			if err == nil {
				t.Fatalf("accepted, want %s", tt.want)
			}
			if code != tt.want {
				t.Fatalf("code %s (%v), want %s", code, err, tt.want)
			}
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("error %T is not *Error", err)
			}
			vfNoSecrets(t, err.Error(), tt.raw)
		})
	}
}

// vfNoSecrets fails when msg holds the token, one of its segments or a
// secret of the fixture.
func vfNoSecrets(t *testing.T, msg, raw string) {
	t.Helper()
	k := vfTestKeys(t)
	for _, s := range append(strings.Split(raw, "."), raw, k.guestB64, k.guest2B64, string(k.guest)) {
		if len(s) >= 8 && strings.Contains(msg, s) {
			t.Fatalf("error %q holds token or secret material", msg)
		}
	}
}

func (f *vfFixture) xbsWithHeader(t testing.TB, h map[string]any) string {
	return vfSign(t, jwa.RS256, f.keys.rsa, h, f.xbsClaims())
}

func vfJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// vfJSONWithDuplicate is the JSON of c with member appended verbatim.
func vfJSONWithDuplicate(t testing.TB, c vfClaims, member string) string {
	s := vfJSON(t, c)
	return s[:len(s)-1] + "," + member + "}"
}

// vfNonCanonical re-spells seg with non-zero unused trailing bits: a text
// lenient decoders map to the same bytes.
func vfNonCanonical(t testing.TB, seg string) string {
	t.Helper()
	if len(seg)%4 == 0 {
		t.Fatalf("segment %q has no unused bits", seg)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, seg[len(seg)-1])
	return seg[:len(seg)-1] + string(alphabet[last|1])
}

// TestDatesWithinTheLeewayAreAccepted: clocks drift; exp just past and
// nbf/iat just ahead, within the leeway, are accepted.
func TestDatesWithinTheLeewayAreAccepted(t *testing.T) {
	f := newVFFixture(t)
	v := f.verifier(t)
	now := f.clock.Now()
	for name, c := range map[string]vfClaims{
		"exp 59s ago":      vfWith(f.xbsClaims(), "exp", now.Add(-59*time.Second).Unix(), "iat", now.Add(-time.Hour).Unix()),
		"nbf 60s ahead":    vfWith(f.xbsClaims(), "nbf", now.Add(60*time.Second).Unix()),
		"iat 30s ahead":    vfWith(f.xbsClaims(), "iat", now.Add(30*time.Second).Unix()),
		"fractional exp":   vfWith(f.xbsClaims(), "exp", json.Number("1750003600.5")),
		"exp as 1.75e9+1h": vfWith(f.xbsClaims(), "exp", json.Number("1.7500036e9")),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := v.Verify(context.Background(), f.xbs(t, c)); err != nil {
				t.Fatalf("rejected: %v", err)
			}
		})
	}
}

// TestStringExpIsRejectedWithAClearDetail: a date written as a string is
// the classic interop mistake; the detail says what is wrong.
func TestStringExpIsRejectedWithAClearDetail(t *testing.T) {
	f := newVFFixture(t)
	v := f.verifier(t)
	_, err := v.Verify(context.Background(), f.guest(t, vfWith(f.guestClaims(), "exp", "1750003600")))
	var te *Error
	if !errors.As(err, &te) || te.Code != CodeBadClaims || te.Detail != "exp must be a JSON number" {
		t.Fatalf("err = %v, want bad_claims: exp must be a JSON number", err)
	}
}

// TestLargeIntegerClaimsStayExact: numbers are json.Number, so an id past
// 2^53 survives verification digit for digit.
func TestLargeIntegerClaimsStayExact(t *testing.T) {
	f := newVFFixture(t)
	v := f.verifier(t)
	raw := vfSign(t, jwa.RS256, f.keys.rsa, map[string]any{"alg": "RS256", "kid": vfRSAKid},
		vfWith(f.xbsClaims(), "event_id", json.Number("12345678901234567890123")))
	tok, err := v.Verify(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Claims()["event_id"]; got != json.Number("12345678901234567890123") {
		t.Fatalf("event_id = %#v", got)
	}
}

// TestGuestTokenFromThePartnerDocsIsAccepted builds a guest token the way
// the guest-issuer documentation tells a partner to (any JWT library:
// HS256 keyed with the base64-decoded secret, typ JWT, numeric exp),
// independently of jwx, and checks that the undecoded secret text fails.
func TestGuestTokenFromThePartnerDocsIsAccepted(t *testing.T) {
	f := newVFFixture(t)
	v := f.verifier(t)
	mint := func(key []byte) string {
		enc := base64.RawURLEncoding.EncodeToString
		header := enc([]byte(`{"alg":"HS256","typ":"JWT"}`))
		payload := enc([]byte(`{"sub":"partner-user-42","name":"Ada Lovelace","iss":"` + vfGuestIss + `","exp":` +
			strconv.FormatInt(f.unix(time.Hour), 10) + `}`))
		m := hmac.New(sha256.New, key)
		m.Write([]byte(header + "." + payload))
		return header + "." + payload + "." + enc(m.Sum(nil))
	}
	secret, err := base64.StdEncoding.DecodeString(f.keys.guestB64)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := v.VerifyKind(context.Background(), mint(secret), KindGuest)
	if err != nil {
		t.Fatalf("documented guest token rejected: %v", err)
	}
	if tok.Subject != "partner-user-42" || tok.Name != "Ada Lovelace" || tok.Issuer != vfGuestIss {
		t.Errorf("token = %+v", tok)
	}
	if _, err := v.Verify(context.Background(), mint([]byte(f.keys.guestB64))); CodeOf(err) != CodeBadSignature {
		t.Fatalf("token keyed with the secret text: %v, want bad_signature", err)
	}

	// The same through MintGuest, as the other half of the package mints.
	raw, err := MintGuest(secret, vfGuestIss, "partner-user-42", "Ada", f.clock.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyKind(context.Background(), raw, KindGuest); err != nil {
		t.Fatalf("MintGuest token rejected: %v", err)
	}
}

// TestNoTrustedIssuersVerifiesNothing: an empty issuer list is a valid
// configuration (a policy that needs no token), and every token is then
// from an untrusted issuer.
func TestNoTrustedIssuersVerifiesNothing(t *testing.T) {
	f := newVFFixture(t)
	raw := f.xbs(t, f.xbsClaims())
	v := f.verifier(t, func(c *Config) { c.Issuers = nil })
	_, err := v.Verify(context.Background(), raw)
	if got := CodeOf(err); got != CodeUntrustedIssuer {
		t.Fatalf("code %q (%v), want %s", got, err, CodeUntrustedIssuer)
	}
}

// TestBadConfigurationIsRefused: New refuses every configuration mistake
// with an error naming the entry and the field, never the secret.
func TestBadConfigurationIsRefused(t *testing.T) {
	f := newVFFixture(t)
	short := base64.StdEncoding.EncodeToString([]byte("only-twenty-bytes-xx"))
	tests := []struct {
		name   string
		edit   func(c *Config)
		entry  string // "" for a Config-level field
		field  string
		secret string // must not appear in the error
	}{
		{"negative leeway", func(c *Config) { c.Leeway = -time.Second }, "", "Leeway", ""},
		{"negative size bound", func(c *Config) { c.MaxTokenSize = -1 }, "", "MaxTokenSize", ""},
		{"duplicate iss", func(c *Config) { c.Issuers[4].Issuer = vfSATIss }, "access", "Issuer", ""},
		{"empty iss", func(c *Config) { c.Issuers[0].Issuer = "" }, "anon-pool", "Issuer", ""},
		{"unknown kind", func(c *Config) { c.Issuers[3].Kind = "saml" }, "sat", "Kind", ""},
		{"kind absent", func(c *Config) { c.Issuers[3].Kind = "" }, "sat", "Kind", ""},
		{"regular as a kind of its own", func(c *Config) { c.Issuers[1].Kind = KindRegular }, "user-pool", "Kind", ""},
		{"guest secret not base64", func(c *Config) { c.Issuers[2].GuestSecret = "not base64 at all!!" }, "partner", "GuestSecret", "not base64 at all!!"},
		{"guest secret shorter than 32 bytes", func(c *Config) { c.Issuers[2].GuestSecret = short }, "partner", "GuestSecret", short},
		{"guest secret absent", func(c *Config) { c.Issuers[2].GuestSecret = "" }, "partner", "GuestSecret", ""},
		{"guest secret on an xbs entry", func(c *Config) { c.Issuers[0].GuestSecret = f.keys.guestB64 }, "anon-pool", "GuestSecret", f.keys.guestB64},
		{"xbs without audiences", func(c *Config) { c.Issuers[0].Audiences = nil }, "anon-pool", "Audiences", ""},
		{"sat without audiences", func(c *Config) { c.Issuers[3].Audiences = nil }, "sat", "Audiences", ""},
		{"access without audiences", func(c *Config) { c.Issuers[4].Audiences = nil }, "access", "Audiences", ""},
		{"empty audience", func(c *Config) { c.Issuers[4].Audiences = []string{""} }, "access", "Audiences", ""},
		{"guest with an audience", func(c *Config) { c.Issuers[2].Audiences = []string{"x"} }, "partner", "Audiences", ""},
		{"guest with RS256", func(c *Config) { c.Issuers[2].Algorithms = []string{"RS256"} }, "partner", "Algorithms", ""},
		{"guest with HS512", func(c *Config) { c.Issuers[2].Algorithms = []string{"HS512"} }, "partner", "Algorithms", ""},
		{"xbs with HS256", func(c *Config) { c.Issuers[0].Algorithms = []string{"RS256", "HS256"} }, "anon-pool", "Algorithms", ""},
		{"sat with HS384", func(c *Config) { c.Issuers[3].Algorithms = []string{"HS384"} }, "sat", "Algorithms", ""},
		{"access with none", func(c *Config) { c.Issuers[4].Algorithms = []string{"none"} }, "access", "Algorithms", ""},
		{"xbs with PS256", func(c *Config) { c.Issuers[0].Algorithms = []string{"PS256"} }, "anon-pool", "Algorithms", ""},
		{"xbs without keys", func(c *Config) { c.Issuers[0].PublicKeys = nil }, "anon-pool", "Keys", ""},
		{"xbs with an empty key set", func(c *Config) { c.Issuers[0].PublicKeys = jwk.NewSet() }, "anon-pool", "PublicKeys", ""},
		{"keys and public keys", func(c *Config) { c.Issuers[3].Keys = KeySource{URL: "https://keys.example/jwks.json"} }, "sat", "Keys", ""},
		{"guest with keys", func(c *Config) { c.Issuers[2].PublicKeys = c.Issuers[3].PublicKeys }, "partner", "Keys", ""},
		{"regular on a sat entry", func(c *Config) { c.Issuers[3].Regular = &Regular{} }, "sat", "Regular", ""},
		{"XBS_ANONYMOUS as a regular type", func(c *Config) { c.Issuers[1].Regular = &Regular{AuthorizationTypes: []string{"XBS_ANONYMOUS"}} }, "user-pool", "Regular.AuthorizationTypes", ""},
		{"negative access max lifetime", func(c *Config) { c.Issuers[4].MaxLifetime = -time.Hour }, "access", "MaxLifetime", ""},
		{"negative guest max lifetime", func(c *Config) { c.Issuers[2].MaxLifetime = -time.Hour }, "partner", "MaxLifetime", ""},
		{"unnamed entry", func(c *Config) { c.Issuers[0].Name = ""; c.Issuers[0].Audiences = nil }, "issuers[0]", "Audiences", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := f.config(t)
			tt.edit(&cfg)
			v, err := New(context.Background(), cfg)
			if err == nil {
				v.Close()
				t.Fatal("configuration accepted")
			}
			msg := err.Error()
			if tt.entry != "" && !strings.Contains(msg, `"`+tt.entry+`"`) {
				t.Errorf("error %q does not name entry %q", msg, tt.entry)
			}
			if !strings.Contains(msg, tt.field+":") {
				t.Errorf("error %q does not name field %s", msg, tt.field)
			}
			if tt.secret != "" && strings.Contains(msg, tt.secret) {
				t.Errorf("error holds the secret")
			}
		})
	}
}

// TestRotatedGuestSecretRevokesAccessTokens: a Verifier built with the
// guest issuer's new secret refuses access tokens minted under the old one
// (revoked) and the guest tokens signed with it (bad_signature).
func TestRotatedGuestSecretRevokesAccessTokens(t *testing.T) {
	f := newVFFixture(t)
	before := f.verifier(t)
	access := f.access(t, f.accessClaims(t))
	guest := f.guest(t, f.guestClaims())
	if _, err := before.VerifyKind(context.Background(), access, KindAccess); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	after := f.verifier(t, func(c *Config) { c.Issuers[2].GuestSecret = f.keys.guest2B64 })
	if _, err := after.Verify(context.Background(), access); CodeOf(err) != CodeRevoked {
		t.Fatalf("access after rotation: %v, want revoked", err)
	}
	if _, err := after.Verify(context.Background(), guest); CodeOf(err) != CodeBadSignature {
		t.Fatalf("guest token after rotation: %v, want bad_signature", err)
	}
	g1, _ := before.GuestGeneration(vfGuestIss)
	g2, ok := after.GuestGeneration(vfGuestIss)
	if !ok || g1 == g2 {
		t.Fatalf("generation did not change with the secret")
	}
	if _, ok := after.GuestGeneration(vfSATIss); ok {
		t.Fatal("a SAT issuer has a guest generation")
	}
}

// TestKeyOfAnotherAlgorithmIsRejected: a key whose own alg differs from the
// one the token uses, or of the wrong type or curve, never verifies it
// even when both algorithms are on the allow-list (RFC 8725 §3.1).
func TestKeyOfAnotherAlgorithmIsRejected(t *testing.T) {
	f := newVFFixture(t)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	set := vfPublicSet(t, &f.keys.rsa.PublicKey, vfRSAKid, jwa.RS256)
	ec, _ := jwk.FromRaw(&f.keys.sat.PublicKey) // no alg of its own
	_ = ec.Set(jwk.KeyIDKey, "ec-1")
	_ = set.AddKey(ec)
	p, _ := jwk.FromRaw(&p384.PublicKey)
	_ = p.Set(jwk.KeyIDKey, "p384")
	_ = set.AddKey(p)
	enc, _ := jwk.FromRaw(&f.keys.access.PublicKey)
	_ = enc.Set(jwk.KeyIDKey, "enc-1")
	_ = enc.Set(jwk.KeyUsageKey, "enc")
	_ = set.AddKey(enc)
	v := f.verifier(t, func(c *Config) {
		c.Issuers[0].Algorithms = []string{"RS256", "RS512", "ES256", "ES384"}
		c.Issuers[0].PublicKeys = set
	})
	tests := []struct {
		name string
		raw  string
		want string
	}{
		{"RS512 with an RS256 key", vfSign(t, jwa.RS512, f.keys.rsa, map[string]any{"alg": "RS512", "kid": vfRSAKid}, f.xbsClaims()), CodeBadAlgorithm},
		{"ES256 naming the RSA key", vfSign(t, jwa.ES256, f.keys.sat, map[string]any{"alg": "ES256", "kid": vfRSAKid}, f.xbsClaims()), CodeBadAlgorithm},
		{"RS256 naming the EC key", vfSign(t, jwa.RS256, f.keys.rsa, map[string]any{"alg": "RS256", "kid": "ec-1"}, f.xbsClaims()), CodeBadAlgorithm},
		{"ES384 naming a P-256 key", vfSign(t, jwa.ES384, p384, map[string]any{"alg": "ES384", "kid": "ec-1"}, f.xbsClaims()), CodeBadAlgorithm},
		{"ES256 naming a P-384 key", vfSign(t, jwa.ES256, f.keys.sat, map[string]any{"alg": "ES256", "kid": "p384"}, f.xbsClaims()), CodeBadAlgorithm},
		{"an encryption key", vfSign(t, jwa.ES256, f.keys.access, map[string]any{"alg": "ES256", "kid": "enc-1"}, f.xbsClaims()), CodeUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, _, err := vfCode(v, tt.raw); code != tt.want {
				t.Fatalf("code %s (%v), want %s", code, err, tt.want)
			}
		})
	}
	// The EC key without an alg of its own does verify ES256.
	if _, err := v.Verify(context.Background(), vfSign(t, jwa.ES256, f.keys.sat, map[string]any{"alg": "ES256", "kid": "ec-1"}, f.xbsClaims())); err != nil {
		t.Fatalf("ES256 with the P-256 key: %v", err)
	}
}

// TestTokenMemoIsKeptWithTheToken: a memo set on a verified token is there
// on the next (cached) verification of the same token.
func TestTokenMemoIsKeptWithTheToken(t *testing.T) {
	f := newVFFixture(t)
	v := f.verifier(t)
	raw := f.guest(t, f.guestClaims())
	tok, err := v.Verify(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := memo.Load[any](tok.Memo()); ok {
		t.Fatalf("fresh token has a memo: %v", got)
	}
	memo.Store(tok.Memo(), "derived")
	again, err := v.Verify(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := memo.Load[string](again.Memo()); !ok || got != "derived" {
		t.Fatalf("memo = %q, %v", got, ok)
	}
}

// TestTokensTheSignerMintsAreAccepted: every kind guestgate mints verifies
// under a configuration built from Signer.PublicKeys, as the sidecar wires
// it, and each is refused where another kind is expected.
func TestTokensTheSignerMintsAreAccepted(t *testing.T) {
	f := newVFFixture(t)
	signingKey := func(raw any, kid, alg string) SigningKey {
		k, err := jwk.FromRaw(raw)
		if err != nil {
			t.Fatal(err)
		}
		return SigningKey{ID: kid, Algorithm: alg, Private: k}
	}
	s, err := NewSigner(SignerConfig{
		SAT:                  MintedKind{Issuer: vfSATIss, Audience: vfSATAud, Keys: []SigningKey{signingKey(f.keys.sat, "sat-k", "ES256")}},
		Access:               MintedKind{Issuer: vfAccessIss, Audience: vfAccessAud, Keys: []SigningKey{signingKey(f.keys.access, "access-k", "ES256")}},
		XBS:                  MintedKind{Issuer: vfXBSIss, Audience: vfXBSAud, Keys: []SigningKey{signingKey(f.keys.rsa, "xbs-k", "RS256")}},
		AnonymousEmailDomain: "example.com",
		Now:                  f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	v := f.verifier(t, func(c *Config) {
		c.Issuers[0].PublicKeys = s.PublicKeys(KindXBSAnonymous)
		c.Issuers[3].PublicKeys = s.PublicKeys(KindSecureAnonymous)
		c.Issuers[4].PublicKeys = s.PublicKeys(KindAccess)
	})
	gen, _ := v.GuestGeneration(vfGuestIss)
	mint := func(i Issued, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return i.Token
	}
	tests := []struct {
		name string
		raw  string
		kind Kind
	}{
		{"SAT", mint(s.MintSAT(SATClaims{AccountID: "acct-1", ProviderID: "prov-1", Scope: "launchpads/lp-123", Metadata: map[string]any{"n": 1}})), KindSecureAnonymous},
		{"access", mint(s.MintAccess(AccessClaims{GuestIssuer: vfGuestIss, GuestSubject: "partner-user-42", Name: "Ada", Generation: gen})), KindAccess},
		{"kite session", mint(s.MintXBSAnonymous(XBSClaims{Entry: "kite", WidgetID: "W-DEMO", ChannelID: "support-1"})), KindXBSAnonymous},
		{"public link", mint(s.MintXBSAnonymous(XBSClaims{Entry: "public_link", ChannelID: "public-lobby"})), KindXBSAnonymous},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := v.VerifyKind(context.Background(), tt.raw, tt.kind)
			if err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if tok.Kind != tt.kind {
				t.Fatalf("kind %s", tok.Kind)
			}
			if _, err := v.VerifyKind(context.Background(), tt.raw, KindGuest); CodeOf(err) != CodeWrongKind {
				t.Fatalf("as a guest token: %v, want wrong_kind", err)
			}
		})
	}
}

// TestConfiguredLeewayBoundsTheDates: the leeway is configurable; a
// shorter one than the default refuses what the default would accept.
func TestConfiguredLeewayBoundsTheDates(t *testing.T) {
	f := newVFFixture(t)
	v := f.verifier(t, func(c *Config) { c.Leeway = 10 * time.Second })
	now := f.clock.Now()
	tests := []struct {
		name string
		c    vfClaims
		want string // "" accepted
	}{
		{"exp 9s ago", vfWith(f.xbsClaims(), "exp", now.Add(-9*time.Second).Unix(), "iat", now.Add(-time.Hour).Unix()), ""},
		{"exp 11s ago", vfWith(f.xbsClaims(), "exp", now.Add(-11*time.Second).Unix(), "iat", now.Add(-time.Hour).Unix()), CodeExpired},
		{"nbf 10s ahead", vfWith(f.xbsClaims(), "nbf", now.Add(10*time.Second).Unix()), ""},
		{"nbf 11s ahead", vfWith(f.xbsClaims(), "nbf", now.Add(11*time.Second).Unix()), CodeNotYetValid},
		{"iat 30s ahead", vfWith(f.xbsClaims(), "iat", now.Add(30*time.Second).Unix()), CodeNotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, err := vfCode(v, f.xbs(t, tt.c))
			if code != tt.want {
				t.Fatalf("code %q (%v), want %q", code, err, tt.want)
			}
		})
	}
}

// TestEveryKindsLifetimeIsBounded: no kind takes a token minted to last.
// For every kind (regular tokens too, on their pool's entry), with iat
// (the lifetime is exp - iat) and without (exp - now): a token living
// the kind's default bound is taken, one living a second past the bound
// and the leeway is bad_claims, and so is one whose exp is in the year
// 3000; an entry's MaxLifetime raises the bound. XBS, SAT and access
// tokens with exp in 3000 were taken.
func TestEveryKindsLifetimeIsBounded(t *testing.T) {
	f := newVFFixture(t)
	year3000 := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	kinds := []struct {
		kind   string
		entry  int // in f.config's issuers
		bound  time.Duration
		claims func() vfClaims
		sign   func(vfClaims) string
	}{
		{"xbs_anonymous", 0, DefaultXBSMaxLifetime, f.xbsClaims, func(c vfClaims) string { return f.xbs(t, c) }},
		{"regular", 1, DefaultXBSMaxLifetime, f.regularClaims, func(c vfClaims) string { return f.xbs(t, c) }},
		{"guest", 2, DefaultGuestMaxLifetime, f.guestClaims, func(c vfClaims) string { return f.guest(t, c) }},
		{"secure_anonymous", 3, DefaultSATMaxLifetime, f.satClaims, func(c vfClaims) string { return f.sat(t, c) }},
		{"access", 4, DefaultAccessMaxLifetime, func() vfClaims { return f.accessClaims(t) }, func(c vfClaims) string { return f.access(t, c) }},
	}
	v := f.verifier(t)
	for _, k := range kinds {
		t.Run(k.kind, func(t *testing.T) {
			// iat an hour ago: exp - iat is the lifetime, exp - now an
			// hour less.
			iat := f.unix(-time.Hour)
			over := k.bound + DefaultLeeway + time.Second
			for _, c := range []struct {
				name   string
				claims vfClaims
				want   string
			}{
				{"iat, living the bound", vfWith(k.claims(), "iat", iat, "exp", iat+int64(k.bound/time.Second)), ""},
				{"iat, living past the bound", vfWith(k.claims(), "iat", iat, "exp", iat+int64(over/time.Second)), CodeBadClaims},
				{"iat, exp in 3000", vfWith(k.claims(), "iat", iat, "exp", year3000), CodeBadClaims},
				{"no iat, exp the bound ahead", vfWith(k.claims(), "iat", nil, "exp", f.unix(k.bound)), ""},
				{"no iat, exp past the bound ahead", vfWith(k.claims(), "iat", nil, "exp", f.unix(over)), CodeBadClaims},
				{"no iat, exp in 3000", vfWith(k.claims(), "iat", nil, "exp", year3000), CodeBadClaims},
			} {
				if code, _, err := vfCode(v, k.sign(c.claims)); code != c.want {
					t.Errorf("%s: %q (%v), want %q", c.name, code, err, c.want)
				}
			}
			// The entry's own bound: a week.
			long := f.verifier(t, func(cfg *Config) { cfg.Issuers[k.entry].MaxLifetime = 7 * 24 * time.Hour })
			if code, _, err := vfCode(long, k.sign(vfWith(k.claims(), "iat", iat, "exp", iat+int64(over/time.Second)))); code != "" {
				t.Errorf("with MaxLifetime a week: %q (%v), want taken", code, err)
			}
		})
	}
}
