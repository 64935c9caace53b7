package tokens

// Loading the keys guestgate signs with: a PEM or JWK file becomes a
// SigningKey, checked for the one algorithm it signs with. The Signer
// (signer.go) takes SigningKeys, loaded here or built by hand.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/guestgate/guestgate/strictjson"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// maxSigningKeyFile bounds a key file; a PEM or JWK key is a few KiB.
const maxSigningKeyFile = 64 << 10

// SigningKey is a private key guestgate signs one kind of token with.
type SigningKey struct {
	ID        string  // the kid its tokens and the JWKS carry
	Algorithm string  // the JWS alg it signs with, the one alg of the key (RFC 8725 §3.1)
	Private   jwk.Key // the private key, with ID and Algorithm set
}

// LoadSigningKey reads a private key from a PEM file (PKCS#8 "PRIVATE
// KEY", PKCS#1 "RSA PRIVATE KEY" or SEC1 "EC PRIVATE KEY"; unencrypted) or
// a JWK file (one JSON object).
//
// The kid of a PEM key is the file's base name without its extension
// ("keys/sat-dev-1.pem" is kid "sat-dev-1"): PEM has no kid, and a name an
// operator chose reads better in logs than a thumbprint. The kid of a JWK is
// its "kid", else its RFC 7638 SHA-256 thumbprint (base64url).
//
// The algorithm is the JWK's "alg" when it has one, else the key type's: RSA
// (at least 2048 bits) RS256, EC P-256 ES256, P-384 ES384, P-521 ES512,
// Ed25519 EdDSA. Other keys are refused.
func LoadSigningKey(path string) (SigningKey, error) {
	data, err := readBounded(path, maxSigningKeyFile)
	if err != nil {
		return SigningKey{}, fmt.Errorf("signing key: %w", err)
	}
	var key SigningKey
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		key, err = parseJWKSigningKey(trimmed)
	} else {
		key, err = parsePEMSigningKey(data, strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)))
	}
	if err != nil {
		return SigningKey{}, fmt.Errorf("signing key %s: %w", path, err)
	}
	return key, nil
}

func parsePEMSigningKey(data []byte, kid string) (SigningKey, error) {
	var block *pem.Block
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "EC PARAMETERS" { // what `openssl ecparam -genkey` puts first
			continue
		}
		if block != nil {
			return SigningKey{}, errors.New("more than one PEM block: one key per file")
		}
		block = b
	}
	if block == nil {
		return SigningKey{}, errors.New("no PEM block: want a PEM private key or a JWK")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return SigningKey{}, errors.New("data after the PEM block")
	}
	if len(block.Headers) != 0 || strings.Contains(block.Type, "ENCRYPTED") {
		return SigningKey{}, errors.New("an encrypted PEM key: decrypt it first (guestgate reads unencrypted keys only)")
	}
	var raw any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		raw, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		raw, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		raw, err = x509.ParseECPrivateKey(block.Bytes)
	case "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE":
		return SigningKey{}, fmt.Errorf("a %s, not a private key", strings.ToLower(block.Type))
	default:
		return SigningKey{}, fmt.Errorf("unsupported PEM type %q: want PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY", block.Type)
	}
	if err != nil {
		return SigningKey{}, fmt.Errorf("%s: %v", block.Type, err)
	}
	alg, err := defaultAlgorithm(raw)
	if err != nil {
		return SigningKey{}, err
	}
	return newSigningKey(raw, kid, alg)
}

func parseJWKSigningKey(data []byte) (SigningKey, error) {
	if err := strictjson.Check(data); err != nil {
		return SigningKey{}, fmt.Errorf("JWK: %w", err)
	}
	key, err := jwk.ParseKey(data)
	if err != nil {
		return SigningKey{}, fmt.Errorf("not a JWK: %v", err)
	}
	if use := key.KeyUsage(); use != "" && use != "sig" {
		return SigningKey{}, fmt.Errorf("the JWK's use is %q, not sig", use)
	}
	var raw any
	if err := key.Raw(&raw); err != nil {
		return SigningKey{}, fmt.Errorf("unusable JWK: %v", err)
	}
	alg := key.Algorithm().String()
	if alg == "" {
		if alg, err = defaultAlgorithm(raw); err != nil {
			return SigningKey{}, err
		}
	}
	kid := key.KeyID()
	if kid == "" {
		tp, err := key.Thumbprint(crypto.SHA256)
		if err != nil {
			return SigningKey{}, fmt.Errorf("JWK thumbprint: %v", err)
		}
		kid = base64.RawURLEncoding.EncodeToString(tp)
	}
	return newSigningKey(raw, kid, alg)
}

// defaultAlgorithm is the JWS algorithm of a private key of its type.
func defaultAlgorithm(raw any) (string, error) {
	switch k := raw.(type) {
	case *rsa.PrivateKey:
		return "RS256", nil
	case *ecdsa.PrivateKey:
		return ecdsaAlgorithm(k.Curve)
	case ed25519.PrivateKey:
		return "EdDSA", nil
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return "", errors.New("a public key, not a private key")
	}
	return "", fmt.Errorf("unsupported key type %T: want RSA, EC or Ed25519", raw)
}

// checkSigningKey checks that raw is a private key usable with alg and
// returns its public key.
func checkSigningKey(raw any, alg string) (crypto.PublicKey, error) {
	var algs []string
	var pub crypto.PublicKey
	switch k := raw.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits; at least %d required", bits, minRSABits)
		}
		if err := k.Validate(); err != nil {
			return nil, errors.New("RSA key fails validation")
		}
		k.Precompute()
		algs, pub = []string{"RS256", "RS384", "RS512"}, &k.PublicKey
	case *ecdsa.PrivateKey:
		a, err := ecdsaAlgorithm(k.Curve)
		if err != nil {
			return nil, err
		}
		algs, pub = []string{a}, &k.PublicKey
	case ed25519.PrivateKey:
		if len(k) != ed25519.PrivateKeySize {
			return nil, errors.New("Ed25519 key of the wrong size")
		}
		algs, pub = []string{"EdDSA"}, k.Public()
	default:
		_, err := defaultAlgorithm(raw)
		return nil, err
	}
	if !slices.Contains(algs, alg) {
		return nil, fmt.Errorf("alg %q does not fit this key (want one of %s)", alg, strings.Join(algs, ", "))
	}
	return pub, nil
}

func newSigningKey(raw any, kid, alg string) (SigningKey, error) {
	if err := checkKID(kid); err != nil {
		return SigningKey{}, err
	}
	if _, err := checkSigningKey(raw, alg); err != nil {
		return SigningKey{}, err
	}
	key, err := jwk.FromRaw(raw)
	if err != nil {
		return SigningKey{}, fmt.Errorf("JWK: %v", err)
	}
	if err := key.Set(jwk.KeyIDKey, kid); err != nil {
		return SigningKey{}, err
	}
	if err := key.Set(jwk.AlgorithmKey, jwa.SignatureAlgorithm(alg)); err != nil {
		return SigningKey{}, err
	}
	return SigningKey{ID: kid, Algorithm: alg, Private: key}, nil
}

// checkKID takes kids of printable ASCII: they go in headers, logs and the
// JWKS verbatim.
func checkKID(kid string) error {
	if kid == "" || len(kid) > 128 {
		return errors.New("kid must be 1 to 128 characters")
	}
	for i := 0; i < len(kid); i++ {
		if kid[i] <= ' ' || kid[i] > '~' || kid[i] == '"' || kid[i] == '\\' {
			return fmt.Errorf("kid %q: printable ASCII only, no spaces or quotes", kid)
		}
	}
	return nil
}
