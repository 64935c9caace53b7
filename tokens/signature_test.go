package tokens

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"
)

// otherS is sig (R || S) with S replaced by n - S: the other signature of
// the same message under the same key, which verifies as well.
func otherS(curve elliptic.Curve, sig []byte) []byte {
	n := curve.Params().N
	size := len(sig) / 2
	s := new(big.Int).SetBytes(sig[size:])
	out := append([]byte(nil), sig[:size]...)
	return append(out, new(big.Int).Sub(n, s).FillBytes(make([]byte, size))...)
}

// verifiesAsECDSA checks sig over input with the standard library alone,
// so a signature refused below is known to be a real one.
func verifiesAsECDSA(pub *ecdsa.PublicKey, h crypto.Hash, input string, sig []byte) bool {
	d := h.New()
	d.Write([]byte(input))
	size := len(sig) / 2
	return ecdsa.Verify(pub, d.Sum(nil), new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:]))
}

// TestHighSSignaturesAreRefused: an ECDSA signature (R, S) has a twin
// (R, n - S) that verifies too, so a token would have two encodings. The
// verifier takes the low-S one and refuses its real high-S re-encoding
// bad_signature, for every kind signed with ES256.
func TestHighSSignaturesAreRefused(t *testing.T) {
	f := newVFFixture(t)
	v := f.verifier(t)
	for _, tc := range []struct {
		kind string
		raw  string
		pub  *ecdsa.PublicKey
	}{
		{"secure_anonymous", f.sat(t, f.satClaims()), &f.keys.sat.PublicKey},
		{"access", f.access(t, f.accessClaims(t)), &f.keys.access.PublicKey},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			dot := strings.LastIndexByte(tc.raw, '.')
			sig, err := base64.RawURLEncoding.DecodeString(tc.raw[dot+1:])
			if err != nil {
				t.Fatal(err)
			}
			twin := otherS(tc.pub.Curve, sig)
			if !verifiesAsECDSA(tc.pub, crypto.SHA256, tc.raw[:dot], sig) || !verifiesAsECDSA(tc.pub, crypto.SHA256, tc.raw[:dot], twin) {
				t.Fatal("the signature and its twin do not both verify as ECDSA")
			}
			high := tc.raw[:dot+1] + base64.RawURLEncoding.EncodeToString(twin)
			if code, _, err := vfCode(v, tc.raw); code != "" {
				t.Fatalf("the low-S token: %v", err)
			}
			if code, _, err := vfCode(v, high); code != CodeBadSignature {
				t.Fatalf("its high-S twin: %q (%v), want bad_signature", code, err)
			}
		})
	}
}

// TestLowSSignerWritesOnlyLowS: on every curve, each signature the signer
// makes is low-S, verifies, and its twin is the high-S one highS names.
// With S at random, 100 low ones by chance would be one in 2^100.
func TestLowSSignerWritesOnlyLowS(t *testing.T) {
	for _, c := range []struct {
		curve elliptic.Curve
		hash  crypto.Hash
	}{{elliptic.P256(), crypto.SHA256}, {elliptic.P384(), crypto.SHA384}, {elliptic.P521(), crypto.SHA512}} {
		key, err := ecdsa.GenerateKey(c.curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		size := (c.curve.Params().N.BitLen() + 7) / 8
		for i := range 100 {
			d := c.hash.New()
			d.Write([]byte{byte(i)})
			der, err := (lowSSigner{key}).Sign(rand.Reader, d.Sum(nil), c.hash)
			if err != nil {
				t.Fatal(err)
			}
			r, s, ok := parseDERSignature(der)
			if !ok {
				t.Fatalf("%s: not a DER signature", c.curve.Params().Name)
			}
			sig := append(r.FillBytes(make([]byte, size)), s.FillBytes(make([]byte, size))...)
			if highS(c.curve, sig) || !highS(c.curve, otherS(c.curve, sig)) || !verifiesAsECDSA(&key.PublicKey, c.hash, string([]byte{byte(i)}), sig) {
				t.Fatalf("%s: signature %d is not a verifying low-S one", c.curve.Params().Name, i)
			}
		}
	}
}

// TestMintedECDSATokensAreLowS: every SAT and access token the signer
// mints is taken by the verifier's low-S rule.
func TestMintedECDSATokensAreLowS(t *testing.T) {
	s := sgSigner(t)
	for i := range 100 {
		for _, mint := range []func() (Issued, error){
			func() (Issued, error) {
				return s.MintSAT(SATClaims{AccountID: "a", ProviderID: "p", Scope: "launchpads/lp-1"})
			},
			func() (Issued, error) {
				return s.MintAccess(AccessClaims{GuestIssuer: "i", GuestSubject: "s", Generation: "g"})
			},
		} {
			iss, err := mint()
			if err != nil {
				t.Fatal(err)
			}
			sig, err := base64.RawURLEncoding.DecodeString(iss.Token[strings.LastIndexByte(iss.Token, '.')+1:])
			if err != nil {
				t.Fatal(err)
			}
			if highS(elliptic.P256(), sig) {
				t.Fatalf("token %d is high-S", i)
			}
		}
	}
}

func parseDERSignature(der []byte) (r, s *big.Int, ok bool) {
	var v struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &v)
	return v.R, v.S, err == nil && len(rest) == 0
}
