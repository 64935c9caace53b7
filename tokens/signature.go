package tokens

// Signatures: the algorithms a configuration may name, whether a key may
// verify a signature of an algorithm, and the verification itself over the
// bytes the strict parser (jose.go) read.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"io"
	"math/big"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// minRSABits is the smallest RSA modulus a signature is verified with, a
// key set takes and guestgate signs with (RFC 7518 §3.3: "A key of size
// 2048 bits or larger MUST be used").
const minRSABits = 2048

// The signature algorithms a configuration may name. PS256/384/512 are left
// out on purpose: jwx verifies RSASSA-PSS with any salt length, and RFC 7518
// §3.5 fixes it to the hash size, so a strict verifier cannot offer them.
// EdDSA is left out until an issuer needs it.
var (
	symmetricAlgorithms = map[string]jwa.SignatureAlgorithm{
		"HS256": jwa.HS256,
	}
	asymmetricAlgorithms = map[string]jwa.SignatureAlgorithm{
		"RS256": jwa.RS256, "RS384": jwa.RS384, "RS512": jwa.RS512,
		"ES256": jwa.ES256, "ES384": jwa.ES384, "ES512": jwa.ES512,
	}
)

var hmacKeyBytes = map[jwa.SignatureAlgorithm]int{jwa.HS256: 32, jwa.HS384: 48, jwa.HS512: 64}

// usableKey checks that key may verify signatures made with alg and returns
// its raw form for the jwx verifier: the key is for signatures (use, key_ops),
// its own alg (when set) is alg, its type and size or curve fit alg.
func usableKey(alg jwa.SignatureAlgorithm, key jwk.Key) (any, error) {
	// RFC 7517 §4.2 and §4.3: "use" and "key_ops" restrict what a key is for.
	if use := key.KeyUsage(); use != "" && use != "sig" {
		return nil, errorf(CodeUnknownKey, "the key with this kid is not a signature key (use)")
	}
	if ops := key.KeyOps(); len(ops) > 0 {
		verify := false
		for _, op := range ops {
			verify = verify || op == jwk.KeyOpVerify
		}
		if !verify {
			return nil, errorf(CodeUnknownKey, "the key with this kid is not a verification key (key_ops)")
		}
	}
	// RFC 8725 §3.1: "each key MUST be used with exactly one algorithm".
	if ka := key.Algorithm().String(); ka != "" && ka != alg.String() {
		return nil, errorf(CodeBadAlgorithm, "the key with this kid is for %s, not %s", ka, alg)
	}
	switch alg {
	case jwa.HS256, jwa.HS384, jwa.HS512:
		if key.KeyType() != jwa.OctetSeq {
			return nil, errorf(CodeBadAlgorithm, "%s needs a symmetric key", alg)
		}
		var secret []byte
		if err := key.Raw(&secret); err != nil {
			return nil, errorf(CodeUnknownKey, "the key with this kid is unusable")
		}
		if err := checkHMACKey(alg, secret); err != nil {
			return nil, err
		}
		return secret, nil
	case jwa.RS256, jwa.RS384, jwa.RS512:
		if key.KeyType() != jwa.RSA {
			return nil, errorf(CodeBadAlgorithm, "%s needs an RSA key", alg)
		}
		raw, err := jwk.PublicRawKeyOf(key)
		pub, ok := raw.(*rsa.PublicKey)
		if err != nil || !ok {
			return nil, errorf(CodeUnknownKey, "the key with this kid is unusable")
		}
		if pub.N.BitLen() < minRSABits {
			return nil, errorf(CodeUnknownKey, "the key with this kid is shorter than %d bits", minRSABits)
		}
		return pub, nil
	case jwa.ES256, jwa.ES384, jwa.ES512:
		if key.KeyType() != jwa.EC {
			return nil, errorf(CodeBadAlgorithm, "%s needs an EC key", alg)
		}
		raw, err := jwk.PublicRawKeyOf(key)
		pub, ok := raw.(*ecdsa.PublicKey)
		if err != nil || !ok {
			return nil, errorf(CodeUnknownKey, "the key with this kid is unusable")
		}
		// RFC 7518 §3.4: each ES algorithm has its one curve.
		if a, err := ecdsaAlgorithm(pub.Curve); err != nil || a != alg.String() {
			return nil, errorf(CodeBadAlgorithm, "%s needs a key on its own curve", alg)
		}
		return pub, nil
	}
	return nil, errorf(CodeBadAlgorithm, "%s is not supported", alg)
}

// checkHMACKey enforces RFC 7518 §3.2: "A key of the same size as the hash
// output ... or larger MUST be used".
func checkHMACKey(alg jwa.SignatureAlgorithm, secret []byte) error {
	min := hmacKeyBytes[alg]
	if min == 0 || len(secret) < min {
		return errorf(CodeUnknownKey, "%s key shorter than %d bytes", alg, min)
	}
	return nil
}

// verifySignature checks c's signature over exactly the bytes the strict
// parser read, with jwx's verifier for alg. raw is what usableKey returned
// (or a guest secret).
func verifySignature(c *compactJWS, alg jwa.SignatureAlgorithm, raw any) error {
	v, err := jws.NewVerifier(alg)
	if err != nil {
		return errorf(CodeBadAlgorithm, "%s is not supported", alg)
	}
	if pub, ok := raw.(*ecdsa.PublicKey); ok && highS(pub.Curve, c.signature) {
		return errorf(CodeBadSignature, "ECDSA signature in high-S form")
	}
	if err := v.Verify([]byte(c.signingInput), c.signature, raw); err != nil {
		return errorf(CodeBadSignature, "signature does not verify")
	}
	return nil
}

// highS says whether an ECDSA JWS signature (R || S, RFC 7518 §3.4) has
// its S in the upper half of the group order. (R, S) and (R, n - S) both
// verify, so a token would have two encodings, each its own cache entry
// and its own revocation or replay key; strict verifiers (BIP 146,
// libsecp256k1) take only the low one, and guestgate's signer writes only
// that (lowSSigner). A signature of the wrong length is left to the
// verifier to refuse.
func highS(curve elliptic.Curve, sig []byte) bool {
	n := curve.Params().N
	size := (n.BitLen() + 7) / 8
	if len(sig) != 2*size {
		return false
	}
	s := new(big.Int).SetBytes(sig[size:])
	return s.Cmp(new(big.Int).Rsh(n, 1)) > 0
}

// lowSSigner signs with an ECDSA key in low-S form (S at most n/2), the
// only form the verifier takes (highS). jws.Sign uses it as the
// crypto.Signer it is.
type lowSSigner struct{ *ecdsa.PrivateKey }

func (k lowSSigner) Sign(rand io.Reader, digest []byte, _ crypto.SignerOpts) ([]byte, error) {
	r, s, err := ecdsa.Sign(rand, k.PrivateKey, digest)
	if err != nil {
		return nil, err
	}
	if n := k.Curve.Params().N; s.Cmp(new(big.Int).Rsh(n, 1)) > 0 {
		s.Sub(n, s)
	}
	return asn1.Marshal(struct{ R, S *big.Int }{r, s})
}

// ecdsaAlgorithm is the one JWS algorithm of an EC key's curve (RFC 7518
// §3.4 binds each ES algorithm to its curve).
func ecdsaAlgorithm(c elliptic.Curve) (string, error) {
	switch c {
	case elliptic.P256():
		return "ES256", nil
	case elliptic.P384():
		return "ES384", nil
	case elliptic.P521():
		return "ES512", nil
	}
	return "", errors.New("EC key on an unsupported curve")
}
