package tokens

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// The signer tests use the committed development keys: they are what the
// development default signs with, and loading them is part of the test.
var sgDevDir = filepath.Join("..", "testdata", "dev", "keys")

const (
	sgSATIss    = "https://guestgate.test/sat"
	sgSATAud    = "https://guestgate.test/launchpads"
	sgAccessIss = "https://guestgate.test/access"
	sgAccessAud = "https://guestgate.test/api"
	sgXBSIss    = "https://cognito-idp.test.invalid/dev-pool"
	sgXBSAud    = "dev-widget-client"
	sgDomain    = "dev.guestgate.invalid"
)

var sgNow = time.Unix(1_750_000_000, 0)

var (
	sgKeysOnce sync.Once
	sgKeys     map[string]SigningKey
	sgKeysErr  error
)

// sgDevKey loads a development key once per test binary.
func sgDevKey(t testing.TB, name string) SigningKey {
	t.Helper()
	sgKeysOnce.Do(func() {
		sgKeys = make(map[string]SigningKey)
		for _, n := range []string{"xbs-dev-1", "sat-dev-1", "sat-dev-0", "access-dev-1"} {
			k, err := LoadSigningKey(filepath.Join(sgDevDir, n+".pem"))
			if err != nil {
				sgKeysErr = err
				return
			}
			sgKeys[n] = k
		}
	})
	if sgKeysErr != nil {
		t.Fatal(sgKeysErr)
	}
	return sgKeys[name]
}

func sgConfig(t testing.TB) SignerConfig {
	return SignerConfig{
		SAT:                  MintedKind{Issuer: sgSATIss, Audience: sgSATAud, Keys: []SigningKey{sgDevKey(t, "sat-dev-1"), sgDevKey(t, "sat-dev-0")}},
		Access:               MintedKind{Issuer: sgAccessIss, Audience: sgAccessAud, Keys: []SigningKey{sgDevKey(t, "access-dev-1")}},
		XBS:                  MintedKind{Issuer: sgXBSIss, Audience: sgXBSAud, Keys: []SigningKey{sgDevKey(t, "xbs-dev-1")}},
		AnonymousEmailDomain: sgDomain,
		Now:                  func() time.Time { return sgNow },
	}
}

func sgSigner(t testing.TB, edit ...func(*SignerConfig)) *Signer {
	t.Helper()
	cfg := sgConfig(t)
	for _, e := range edit {
		e(&cfg)
	}
	s, err := NewSigner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sgParse verifies raw with the signer's public keys of kind and returns
// its protected header (as sent) and claims.
func sgParse(t testing.TB, s *Signer, kind Kind, raw string) (string, map[string]any) {
	t.Helper()
	payload, err := jws.Verify([]byte(raw), jws.WithKeySet(s.PublicKeys(kind), jws.WithRequireKid(true)))
	if err != nil {
		t.Fatalf("%s token does not verify with its public keys: %v", kind, err)
	}
	header, err := base64.RawURLEncoding.DecodeString(strings.SplitN(raw, ".", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return string(header), claims
}

var sgUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestDevelopmentKeysLoadWithTheirFileNamesAsKids(t *testing.T) {
	for name, alg := range map[string]string{"xbs-dev-1": "RS256", "sat-dev-1": "ES256", "sat-dev-0": "ES256", "access-dev-1": "ES256"} {
		k := sgDevKey(t, name)
		if k.ID != name || k.Algorithm != alg || k.Private.KeyID() != name || k.Private.Algorithm().String() != alg {
			t.Errorf("%s: kid %q alg %q", name, k.ID, k.Algorithm)
		}
	}
	// The committed JWKS is the public half of xbs-dev-1.pem.
	ks, err := NewKeySet(context.Background(), KeySource{File: filepath.Join(sgDevDir, "xbs-dev-jwks.json")}, nil, KeyHooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	pub, err := ks.Key(context.Background(), "xbs-dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if pub.Algorithm().String() != "RS256" || pub.KeyUsage() != "sig" {
		t.Fatalf("JWKS key alg %q use %q", pub.Algorithm(), pub.KeyUsage())
	}
	want, _ := sgDevKey(t, "xbs-dev-1").Private.Thumbprint(crypto.SHA256)
	got, _ := pub.Thumbprint(crypto.SHA256)
	if string(want) != string(got) {
		t.Fatal("xbs-dev-jwks.json is not the public key of xbs-dev-1.pem")
	}
}

// sgWrite writes data to a file named name in a temporary directory.
func sgWrite(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func sgPEM(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func sgJWKFile(t *testing.T, raw any, set map[string]any) []byte {
	t.Helper()
	k, err := jwk.FromRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range set {
		if err := k.Set(name, v); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadSigningKeyReadsEveryFormat(t *testing.T) {
	var rsaKey *rsa.PrivateKey
	if err := sgDevKey(t, "xbs-dev-1").Private.Raw(&rsaKey); err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return sgPEM("PRIVATE KEY", der)
	}
	sec1, _ := x509.MarshalECPrivateKey(ec)
	ecParams := append(sgPEM("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}), sgPEM("EC PRIVATE KEY", sec1)...)
	tp, _ := jwk.FromRaw(ec)
	thumb, _ := tp.Thumbprint(crypto.SHA256)

	tests := []struct {
		name, file string
		data       []byte
		kid, alg   string
	}{
		{"PKCS#8 RSA", "rsa-a.pem", pkcs8(rsaKey), "rsa-a", "RS256"},
		{"PKCS#1 RSA", "rsa-b.key", sgPEM("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), "rsa-b", "RS256"},
		{"PKCS#8 EC", "ec-a.pem", pkcs8(ec), "ec-a", "ES256"},
		{"SEC1 EC", "ec-b.pem", sgPEM("EC PRIVATE KEY", sec1), "ec-b", "ES256"},
		{"SEC1 EC after EC PARAMETERS", "ec-c.pem", ecParams, "ec-c", "ES256"},
		{"PKCS#8 P-384", "ec-384.pem", pkcs8(p384), "ec-384", "ES384"},
		{"PKCS#8 Ed25519", "ed.pem", pkcs8(ed), "ed", "EdDSA"},
		{"JWK with kid and alg", "k.json", sgJWKFile(t, rsaKey, map[string]any{"kid": "from-jwk", "alg": "RS384"}), "from-jwk", "RS384"},
		{"JWK without kid or alg", "k.json", sgJWKFile(t, ec, nil), base64.RawURLEncoding.EncodeToString(thumb), "ES256"},
		{"JWK for signing", "k.jwk", sgJWKFile(t, ed, map[string]any{"kid": "ed-jwk", "use": "sig"}), "ed-jwk", "EdDSA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := LoadSigningKey(sgWrite(t, tt.file, tt.data))
			if err != nil {
				t.Fatal(err)
			}
			if k.ID != tt.kid || k.Algorithm != tt.alg {
				t.Fatalf("kid %q alg %q, want %q %q", k.ID, k.Algorithm, tt.kid, tt.alg)
			}
			// It signs: a signer built on it mints a token its JWKS verifies.
			s := sgSigner(t, func(c *SignerConfig) { c.SAT.Keys = []SigningKey{k} })
			iss, err := s.MintSAT(SATClaims{AccountID: "acc", ProviderID: "prov", Scope: "launchpads/lp-1"})
			if err != nil {
				t.Fatal(err)
			}
			header, _ := sgParse(t, s, KindSecureAnonymous, iss.Token)
			if !strings.Contains(header, `"alg":"`+tt.alg+`"`) {
				t.Fatalf("header %s", header)
			}
		})
	}
}

func TestBadSigningKeysAreRefused(t *testing.T) {
	short, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	p224der, _ := x509.MarshalECPrivateKey(p224)
	pubDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	ecPEM := sgPEM("EC PRIVATE KEY", sec1)
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: sec1})
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"RSA under 2048 bits", sgPEM("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(short)), "1024 bits"},
		{"unknown PEM type", sgPEM("DSA PRIVATE KEY", []byte{1, 2, 3}), `unsupported PEM type "DSA PRIVATE KEY"`},
		{"public key", sgPEM("PUBLIC KEY", pubDER), "not a private key"},
		{"encrypted PKCS#8", sgPEM("ENCRYPTED PRIVATE KEY", []byte{1}), "encrypted"},
		{"encrypted legacy PEM", encrypted, "encrypted"},
		{"garbage", []byte("this is not a key\n"), "no PEM block"},
		{"empty file", nil, "no PEM block"},
		{"corrupt DER", sgPEM("EC PRIVATE KEY", []byte{0x30, 0x03, 0x02, 0x01}), "EC PRIVATE KEY:"},
		{"PKCS#1 label on an EC key", sgPEM("RSA PRIVATE KEY", sec1), "RSA PRIVATE KEY:"},
		{"two keys in one file", append(slices.Clone(ecPEM), ecPEM...), "one key per file"},
		{"data after the key", append(slices.Clone(ecPEM), "trailing"...), "after the PEM block"},
		{"P-224 key", sgPEM("EC PRIVATE KEY", p224der), "unsupported curve"},
		{"public JWK", sgJWKFile(t, &ec.PublicKey, map[string]any{"kid": "k"}), "not a private key"},
		{"symmetric JWK", sgJWKFile(t, make([]byte, 32), map[string]any{"kid": "k"}), "unsupported key type"},
		{"JWK alg that does not fit", sgJWKFile(t, ec, map[string]any{"kid": "k", "alg": "RS256"}), "does not fit"},
		{"JWK alg of another curve", sgJWKFile(t, ec, map[string]any{"kid": "k", "alg": "ES384"}), "does not fit"},
		{"JWK for encryption", sgJWKFile(t, ec, map[string]any{"kid": "k", "use": "enc"}), "not sig"},
		{"JWK with a duplicate member", []byte(`{"kty":"EC","kty":"EC"}`), "duplicate member"},
		{"JWK kid with a space", sgJWKFile(t, ec, map[string]any{"kid": "a b"}), "printable ASCII"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := sgWrite(t, "key.pem", tt.data)
			_, err := LoadSigningKey(path)
			if err == nil {
				t.Fatal("key accepted")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file and say %q", err, tt.want)
			}
			body := tt.data
			if len(body) > 40 {
				if i := strings.Index(string(body), "\n"); i >= 0 && len(body) > i+33 {
					if strings.Contains(err.Error(), string(body[i+1:i+33])) {
						t.Error("the error holds key material")
					}
				}
			}
		})
	}
	if _, err := LoadSigningKey(filepath.Join(t.TempDir(), "missing.pem")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestNewSignerRefusesBadConfiguration(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubOnly, _ := jwk.FromRaw(&ec.PublicKey)
	privJWK, _ := jwk.FromRaw(ec)
	tests := []struct {
		name string
		edit func(*SignerConfig)
		want string
	}{
		{"SAT without issuer", func(c *SignerConfig) { c.SAT.Issuer = "" }, "SAT.Issuer: required"},
		{"access without audience", func(c *SignerConfig) { c.Access.Audience = "" }, "Access.Audience: required"},
		{"XBS without keys", func(c *SignerConfig) { c.XBS.Keys = nil }, "XBS.Keys: at least one"},
		{"shared issuer", func(c *SignerConfig) { c.Access.Issuer = sgSATIss }, "Access.Issuer"},
		{"kid on two kinds", func(c *SignerConfig) { c.Access.Keys = append(c.Access.Keys, sgDevKey(t, "sat-dev-0")) }, `Access.Keys[1]: kid "sat-dev-0"`},
		{"kid twice in a kind", func(c *SignerConfig) { c.SAT.Keys = append(c.SAT.Keys, sgDevKey(t, "sat-dev-1")) }, "SAT.Keys[2]"},
		{"negative TTL", func(c *SignerConfig) { c.XBS.TTL = -time.Hour }, "XBS.TTL"},
		{"no email domain", func(c *SignerConfig) { c.AnonymousEmailDomain = "" }, "AnonymousEmailDomain"},
		{"email domain with @", func(c *SignerConfig) { c.AnonymousEmailDomain = "a@b.example" }, "AnonymousEmailDomain"},
		{"upper-case email domain", func(c *SignerConfig) { c.AnonymousEmailDomain = "Example.COM" }, "AnonymousEmailDomain"},
		{"key without private part", func(c *SignerConfig) { c.SAT.Keys = []SigningKey{{ID: "p", Algorithm: "ES256", Private: pubOnly}} }, "not a private key"},
		{"nil key", func(c *SignerConfig) { c.SAT.Keys = []SigningKey{{ID: "p", Algorithm: "ES256"}} }, "no private key"},
		{"no kid", func(c *SignerConfig) { c.SAT.Keys = []SigningKey{{Algorithm: "ES256", Private: privJWK}} }, "kid"},
		{"algorithm that does not fit", func(c *SignerConfig) { c.SAT.Keys = []SigningKey{{ID: "p", Algorithm: "RS256", Private: privJWK}} }, "does not fit"},
		{"HS256", func(c *SignerConfig) { c.SAT.Keys = []SigningKey{{ID: "p", Algorithm: "HS256", Private: privJWK}} }, "does not fit"},
		{"ID and kid disagree", func(c *SignerConfig) {
			k := sgDevKey(t, "sat-dev-1")
			k.ID = "other"
			c.SAT.Keys = []SigningKey{k}
		}, "differs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := sgConfig(t)
			tt.edit(&cfg)
			if _, err := NewSigner(cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
}

func TestMintedTokensRoundTrip(t *testing.T) {
	s := sgSigner(t)
	sat, err := s.MintSAT(SATClaims{AccountID: "acc-1", ProviderID: "prov-1", Scope: "launchpads/lp-123", TTL: 30 * time.Minute,
		FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.com", Metadata: map[string]any{"ticket": 42, "tags": []string{"a"}}})
	if err != nil {
		t.Fatal(err)
	}
	access, err := s.MintAccess(AccessClaims{GuestIssuer: "guest-iss", GuestSubject: "user-42", Name: "Ada", Generation: "gen-1"})
	if err != nil {
		t.Fatal(err)
	}
	kite, err := s.MintXBSAnonymous(XBSClaims{Entry: EntryKite, WidgetID: "W-DEMO", ChannelID: "support-1"})
	if err != nil {
		t.Fatal(err)
	}
	link, err := s.MintXBSAnonymous(XBSClaims{Entry: EntryPublicLink, ChannelID: "Public-Lobby"})
	if err != nil {
		t.Fatal(err)
	}
	iat := float64(sgNow.Unix())
	tests := []struct {
		name   string
		kind   Kind
		issued Issued
		header string
		want   map[string]any // claims with fixed values; "*" for any non-empty string
	}{
		{"SAT", KindSecureAnonymous, sat, `{"alg":"ES256","kid":"sat-dev-1","typ":"sat+jwt"}`, map[string]any{
			"iss": sgSATIss, "aud": sgSATAud, "sub": "*", "jti": "*", "iat": iat, "exp": iat + 1800,
			"role": "launchpad_user", "scope": "launchpads/lp-123", "account_id": "acc-1", "provider_id": "prov-1",
			"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
			"metadata": map[string]any{"ticket": float64(42), "tags": []any{"a"}},
		}},
		{"access", KindAccess, access, `{"alg":"ES256","kid":"access-dev-1","typ":"at+jwt"}`, map[string]any{
			"iss": sgAccessIss, "aud": sgAccessAud, "sub": GuestPersonID("guest-iss", "user-42"), "name": "Ada",
			"scope": "messaging calling people", "guest_iss": "guest-iss", "guest_sub": "user-42", "gen": "gen-1",
			"iat": iat, "exp": iat + 6*3600, "jti": "*",
		}},
		{"XBS kite", KindXBSAnonymous, kite, `{"alg":"RS256","kid":"xbs-dev-1"}`, map[string]any{
			"sub": "*", "cognito:username": "*", "custom:wid": "W-DEMO", "custom:authorization_type": "XBS_ANONYMOUS",
			"token_use": "id", "aud": sgXBSAud, "iss": sgXBSIss, "name": "guest",
			"email": "anonymous-w-demo@anonymous." + sgDomain, "email_verified": false,
			"auth_time": iat, "iat": iat, "exp": iat + 3600, "jti": "*", "origin_jti": "*", "event_id": "*",
			"custom:entry": "kite", "custom:channel_id": "support-1",
		}},
		{"XBS public link", KindXBSAnonymous, link, `{"alg":"RS256","kid":"xbs-dev-1"}`, map[string]any{
			"sub": "*", "cognito:username": "*", "custom:authorization_type": "XBS_ANONYMOUS",
			"token_use": "id", "aud": sgXBSAud, "iss": sgXBSIss, "name": "guest",
			"email": "anonymous-public-lobby@anonymous." + sgDomain, "email_verified": false,
			"auth_time": iat, "iat": iat, "exp": iat + 3600, "jti": "*", "origin_jti": "*", "event_id": "*",
			"custom:entry": "public_link", "custom:channel_id": "Public-Lobby",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header, claims := sgParse(t, s, tt.kind, tt.issued.Token)
			if header != tt.header {
				t.Errorf("header %s, want %s", header, tt.header)
			}
			if got, want := slices.Sorted(maps.Keys(claims)), slices.Sorted(maps.Keys(tt.want)); !slices.Equal(got, want) {
				t.Errorf("claims %v, want %v", got, want)
			}
			for name, want := range tt.want {
				got := claims[name]
				if want == "*" {
					if s, ok := got.(string); !ok || s == "" {
						t.Errorf("%s = %v, want a non-empty string", name, got)
					}
					continue
				}
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(want)
				if string(gj) != string(wj) {
					t.Errorf("%s = %s, want %s", name, gj, wj)
				}
			}
			if tt.issued.Subject != claims["sub"] || !tt.issued.ExpiresAt.Equal(time.Unix(int64(claims["exp"].(float64)), 0)) {
				t.Errorf("Issued subject %q expires %v", tt.issued.Subject, tt.issued.ExpiresAt)
			}
			issuedJSON, _ := json.Marshal(tt.issued.Claims)
			var issuedClaims map[string]any
			_ = json.Unmarshal(issuedJSON, &issuedClaims)
			cj, _ := json.Marshal(claims)
			if string(issuedJSON) != string(cj) {
				t.Errorf("Issued.Claims %s, token %s", issuedJSON, cj)
			}
			for _, name := range []string{"jti", "origin_jti", "event_id"} {
				if v, ok := claims[name].(string); ok && !sgUUID.MatchString(v) {
					t.Errorf("%s %q is not a random UUID", name, v)
				}
			}
			if tt.kind != KindAccess && !sgUUID.MatchString(claims["sub"].(string)) {
				t.Errorf("sub %q is not a random UUID", claims["sub"])
			}
			if tt.kind == KindXBSAnonymous && claims["cognito:username"] != claims["sub"] {
				t.Error("cognito:username is not sub")
			}
		})
	}
}

func TestEveryMintIsAFreshIdentity(t *testing.T) {
	s := sgSigner(t)
	seen := make(map[string]bool)
	for range 20 {
		sat, err := s.MintSAT(SATClaims{AccountID: "a", ProviderID: "p", Scope: "launchpads/x"})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{sat.Subject, sat.Claims["jti"].(string)} {
			if seen[v] {
				t.Fatal("a subject or jti came twice")
			}
			seen[v] = true
		}
	}
	// The access token's subject is the guest's person id: the same every time.
	a1, _ := s.MintAccess(AccessClaims{GuestIssuer: "i", GuestSubject: "s", Generation: "g"})
	a2, _ := s.MintAccess(AccessClaims{GuestIssuer: "i", GuestSubject: "s", Generation: "g", Name: "new name"})
	if a1.Subject != a2.Subject || a1.Claims["jti"] == a2.Claims["jti"] {
		t.Fatal("access subjects differ or jtis repeat")
	}
	if _, ok := a1.Claims["name"]; ok {
		t.Fatal("empty name minted")
	}
}

func TestMintedTokensPassTheVerifier(t *testing.T) {
	s := sgSigner(t)
	secret := make([]byte, 32)
	rand.Read(secret)
	v, err := New(context.Background(), Config{
		Issuers: []Issuer{
			{Name: "sat", Kind: KindSecureAnonymous, Issuer: sgSATIss, Audiences: []string{sgSATAud}, PublicKeys: s.PublicKeys(KindSecureAnonymous)},
			{Name: "access", Kind: KindAccess, Issuer: sgAccessIss, Audiences: []string{sgAccessAud}, PublicKeys: s.PublicKeys(KindAccess)},
			{Name: "xbs", Kind: KindXBSAnonymous, Issuer: sgXBSIss, Audiences: []string{sgXBSAud}, AssertsBindingClaims: true, PublicKeys: s.PublicKeys(KindXBSAnonymous)},
			{Name: "partner", Kind: KindGuest, Issuer: "partner-1", GuestSecret: base64.StdEncoding.EncodeToString(secret)},
		},
		Now: func() time.Time { return sgNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	gen, _ := v.GuestGeneration("partner-1")
	mint := map[Kind]func() (Issued, error){
		KindSecureAnonymous: func() (Issued, error) {
			return s.MintSAT(SATClaims{AccountID: "a", ProviderID: "p", Scope: "launchpads/lp-1", Metadata: map[string]any{"k": "v"}})
		},
		KindAccess: func() (Issued, error) {
			return s.MintAccess(AccessClaims{GuestIssuer: "partner-1", GuestSubject: "user-1", Name: "Ada", Generation: gen})
		},
		KindXBSAnonymous: func() (Issued, error) {
			return s.MintXBSAnonymous(XBSClaims{Entry: EntryKite, WidgetID: "W-DEMO", ChannelID: "support-1"})
		},
	}
	for kind, m := range mint {
		t.Run(string(kind), func(t *testing.T) {
			iss, err := m()
			if err != nil {
				t.Fatal(err)
			}
			tok, err := v.Verify(context.Background(), iss.Token)
			if err != nil {
				t.Fatalf("verifier refused a minted %s token: %v", kind, err)
			}
			if tok.Kind != kind || tok.Subject != iss.Subject || !tok.ExpiresAt.Equal(iss.ExpiresAt) {
				t.Fatalf("verified as %s %q %v", tok.Kind, tok.Subject, tok.ExpiresAt)
			}
		})
	}
	guest, err := MintGuest(secret, "partner-1", "user-1", "Ada", sgNow.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := v.VerifyKind(context.Background(), guest, KindGuest); err != nil || tok.Subject != "user-1" {
		t.Fatalf("guest token: %v", err)
	}
}

func TestRotatedKeysAllVerifyAndTheNewestSigns(t *testing.T) {
	s := sgSigner(t)
	sat, err := s.MintSAT(SATClaims{AccountID: "a", ProviderID: "p", Scope: "launchpads/x"})
	if err != nil {
		t.Fatal(err)
	}
	if header, _ := sgParse(t, s, KindSecureAnonymous, sat.Token); !strings.Contains(header, `"kid":"sat-dev-1"`) {
		t.Fatalf("signed by %s, want the first key", header)
	}
	// A token of the older key, from before the rotation, still verifies.
	before := sgSigner(t, func(c *SignerConfig) { c.SAT.Keys = []SigningKey{sgDevKey(t, "sat-dev-0")} })
	old, err := before.MintSAT(SATClaims{AccountID: "a", ProviderID: "p", Scope: "launchpads/x"})
	if err != nil {
		t.Fatal(err)
	}
	sgParse(t, s, KindSecureAnonymous, old.Token)

	kids := func(set jwk.Set) []string {
		var out []string
		for i := range set.Len() {
			k, _ := set.Key(i)
			out = append(out, k.KeyID())
		}
		return out
	}
	if got := kids(s.PublicKeys(KindSecureAnonymous)); !slices.Equal(got, []string{"sat-dev-1", "sat-dev-0"}) {
		t.Fatalf("SAT public keys %v", got)
	}
	if got := kids(s.PublicKeys(KindRegular)); len(got) != 0 {
		t.Fatalf("public keys of a kind guestgate does not mint: %v", got)
	}
	var doc struct{ Keys []map[string]any }
	if err := json.Unmarshal(s.JWKS(), &doc); err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, k := range doc.Keys {
		all = append(all, k["kid"].(string))
	}
	if want := []string{"sat-dev-1", "sat-dev-0", "access-dev-1", "xbs-dev-1"}; !slices.Equal(all, want) {
		t.Fatalf("JWKS kids %v, want %v", all, want)
	}
	// A key of one kind does not verify another kind's tokens.
	xbs, _ := s.MintXBSAnonymous(XBSClaims{Entry: EntryPublicLink, ChannelID: "c"})
	if _, err := jws.Verify([]byte(xbs.Token), jws.WithKeySet(s.PublicKeys(KindSecureAnonymous))); err == nil {
		t.Fatal("an XBS token verified with the SAT keys")
	}
}

func TestJWKSHasNoPrivateMaterial(t *testing.T) {
	s := sgSigner(t)
	var doc map[string][]map[string]any
	if err := json.Unmarshal(s.JWKS(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc) != 1 || len(doc["keys"]) != 4 {
		t.Fatalf("JWKS %s", s.JWKS())
	}
	for _, k := range doc["keys"] {
		for _, m := range []string{"d", "p", "q", "dp", "dq", "qi", "k", "oth"} {
			if _, ok := k[m]; ok {
				t.Fatalf("JWKS key %v holds private member %q", k["kid"], m)
			}
		}
		if k["use"] != "sig" || k["kid"] == "" || k["alg"] == nil {
			t.Fatalf("JWKS key without use, kid or alg: %v", k["kid"])
		}
	}
	for _, kind := range []Kind{KindSecureAnonymous, KindAccess, KindXBSAnonymous} {
		b, _ := json.Marshal(s.PublicKeys(kind))
		if _, err := NewKeySet(context.Background(), KeySource{Inline: string(b)}, nil, KeyHooks{}); err != nil {
			t.Fatalf("public keys of %s are not a verification set: %v", kind, err)
		}
	}
	// The JWKS is the caller's copy.
	j := s.JWKS()
	j[0] = 'x'
	if s.JWKS()[0] != '{' {
		t.Fatal("JWKS shares its bytes")
	}
}

func TestMintRefusesBadClaims(t *testing.T) {
	s := sgSigner(t)
	sat := func(edit func(*SATClaims)) func() error {
		return func() error {
			c := SATClaims{AccountID: "a", ProviderID: "p", Scope: "launchpads/lp-1"}
			edit(&c)
			_, err := s.MintSAT(c)
			return err
		}
	}
	access := func(edit func(*AccessClaims)) func() error {
		return func() error {
			c := AccessClaims{GuestIssuer: "i", GuestSubject: "s", Generation: "g"}
			edit(&c)
			_, err := s.MintAccess(c)
			return err
		}
	}
	xbs := func(c XBSClaims) func() error {
		return func() error { _, err := s.MintXBSAnonymous(c); return err }
	}
	tests := []struct {
		name  string
		mint  func() error
		want  string
		claim string // the claim a *ClaimError names; "": not the caller's claim value
	}{
		{"SAT without account", sat(func(c *SATClaims) { c.AccountID = "" }), "account_id required", "account_id"},
		{"SAT without provider", sat(func(c *SATClaims) { c.ProviderID = "" }), "provider_id required", "provider_id"},
		{"SAT without scope", sat(func(c *SATClaims) { c.Scope = "" }), "scope required", "scope"},
		{"SAT scope climbing out", sat(func(c *SATClaims) { c.Scope = "launchpads/../admin" }), "resource path", "scope"},
		{"SAT scope with an empty segment", sat(func(c *SATClaims) { c.Scope = "launchpads//x" }), "resource path", "scope"},
		{"SAT scope with a leading slash", sat(func(c *SATClaims) { c.Scope = "/launchpads/x" }), "resource path", "scope"},
		{"SAT scope with a query", sat(func(c *SATClaims) { c.Scope = "launchpads/x?y" }), "resource path", "scope"},
		{"SAT unknown role", sat(func(c *SATClaims) { c.Role = "root" }), "role", ""},
		{"SAT negative TTL", sat(func(c *SATClaims) { c.TTL = -time.Second }), "TTL", ""},
		{"SAT name with a newline", sat(func(c *SATClaims) { c.FirstName = "Ada\nX-Evil: 1" }), "control character", "first_name"},
		{"SAT bad email", sat(func(c *SATClaims) { c.Email = "not an email" }), "e-mail", "email"},
		{"SAT metadata too large", sat(func(c *SATClaims) { c.Metadata = map[string]any{"x": strings.Repeat("a", 3000)} }), "larger than", "metadata"},
		{"SAT metadata not JSON", sat(func(c *SATClaims) { c.Metadata = map[string]any{"x": make(chan int)} }), "not JSON", "metadata"},
		{"access without guest issuer", access(func(c *AccessClaims) { c.GuestIssuer = "" }), "guest_iss required", "guest_iss"},
		{"access with a bad guest subject", access(func(c *AccessClaims) { c.GuestSubject = "a b" }), "guest_sub", "guest_sub"},
		{"access without generation", access(func(c *AccessClaims) { c.Generation = "" }), "gen required", "gen"},
		{"access name with a CR", access(func(c *AccessClaims) { c.Name = "Ada\rLovelace" }), "control character", "name"},
		{"access name not UTF-8", access(func(c *AccessClaims) { c.Name = "Ad\xffa" }), "UTF-8", "name"},
		{"access guest subject too long", access(func(c *AccessClaims) { c.GuestSubject = strings.Repeat("a", 257) }), "guest_sub", "guest_sub"},
		{"SAT last name not UTF-8", sat(func(c *SATClaims) { c.LastName = "L\xc0\xaf" }), "UTF-8", "last_name"},
		{"SAT metadata larger once escaped", sat(func(c *SATClaims) { c.Metadata = map[string]any{"x": strings.Repeat("<", 1000)} }), "larger than", "metadata"},
		{"kite without channel", xbs(XBSClaims{Entry: EntryKite, WidgetID: "W-DEMO"}), "needs a widget id and a channel id", ""},
		{"kite without widget", xbs(XBSClaims{Entry: EntryKite, ChannelID: "c"}), "needs a widget id and a channel id", ""},
		{"link with a widget", xbs(XBSClaims{Entry: EntryPublicLink, WidgetID: "W-DEMO", ChannelID: "c"}), "no widget id", ""},
		{"link without channel", xbs(XBSClaims{Entry: EntryPublicLink}), "needs a channel id", ""},
		{"unknown entry", xbs(XBSClaims{Entry: "email", ChannelID: "c"}), "entry must be", ""},
		{"no entry", xbs(XBSClaims{WidgetID: "W", ChannelID: "c"}), "entry must be", ""},
		{"widget id with @", xbs(XBSClaims{Entry: EntryKite, WidgetID: "a@b", ChannelID: "c"}), "widget id", "custom:wid"},
		{"channel id with a slash", xbs(XBSClaims{Entry: EntryPublicLink, ChannelID: "c/../d"}), "channel id", "custom:channel_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.mint()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one saying %q", err, tt.want)
			}
			var ce *ClaimError
			if errors.As(err, &ce) != (tt.claim != "") || tt.claim != "" && ce.Claim != tt.claim {
				t.Fatalf("error %v: ClaimError %+v, want one naming %q", err, ce, tt.claim)
			}
		})
	}
}

func TestSATDefaultsAndTTL(t *testing.T) {
	s := sgSigner(t, func(c *SignerConfig) { c.SAT.TTL = 2 * time.Hour })
	iss, err := s.MintSAT(SATClaims{AccountID: "a", ProviderID: "p", Role: RoleAdmin, Scope: "launchpads/x"})
	if err != nil {
		t.Fatal(err)
	}
	if !iss.ExpiresAt.Equal(sgNow.Add(2*time.Hour)) || iss.Claims["role"] != RoleAdmin {
		t.Fatalf("expires %v role %v", iss.ExpiresAt, iss.Claims["role"])
	}
	for _, name := range []string{"first_name", "last_name", "email", "metadata"} {
		if _, ok := iss.Claims[name]; ok {
			t.Errorf("unset %s minted", name)
		}
	}
	d := sgSigner(t)
	iss, _ = d.MintSAT(SATClaims{AccountID: "a", ProviderID: "p", Scope: "launchpads/x"})
	if !iss.ExpiresAt.Equal(sgNow.Add(DefaultSATTTL)) || iss.Claims["role"] != RoleLaunchpad {
		t.Fatalf("default expires %v role %v", iss.ExpiresAt, iss.Claims["role"])
	}
}

func BenchmarkMintSAT(b *testing.B) {
	s := sgSigner(b)
	c := SATClaims{AccountID: "acc-1", ProviderID: "prov-1", Scope: "launchpads/lp-123", FirstName: "Ada"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.MintSAT(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMintAccess(b *testing.B) {
	s := sgSigner(b)
	c := AccessClaims{GuestIssuer: "partner-1", GuestSubject: "user-42", Name: "Ada", Generation: "gen"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.MintAccess(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMintXBS(b *testing.B) {
	s := sgSigner(b)
	c := XBSClaims{Entry: EntryKite, WidgetID: "W-DEMO", ChannelID: "support-1"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.MintXBSAnonymous(c); err != nil {
			b.Fatal(err)
		}
	}
}
