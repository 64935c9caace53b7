package tokens

// Reading a JWKS: strict JSON, then only public signature keys of the
// supported types, each usable with the algorithm it names.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/guestgate/guestgate/strictjson"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// privateMembers are the JWK members of private or symmetric key material
// (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC 8037 §2).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// parseKeySet parses a JWKS strictly: one JSON object with a "keys" array,
// read by strictjson (no duplicate member names anywhere, nothing after
// it) before jwx sees any of it. Every signature key must be a public RSA
// (at least 2048 bits), EC (P-256, P-384, P-521) or Ed25519 key with an
// alg, when it has one, that fits it; kids are unique, and a set of more
// than one key names each. Keys marked for another use than "sig", or with
// a key-encryption alg (the encryption key some IdPs publish beside their
// signing keys), are left out: they never verify a signature. A set with
// no signature key is an error.
func parseKeySet(data []byte) (*keyState, error) {
	if err := strictjson.Check(data); err != nil {
		return nil, err
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, errors.New(`not a JWKS: want an object with a "keys" array`)
	}
	st := &keyState{byKID: make(map[string]jwk.Key, len(doc.Keys))}
	var keys []jwk.Key
	h := sha256.New()
	for i, raw := range doc.Keys {
		var members map[string]json.RawMessage
		if err := json.Unmarshal(raw, &members); err != nil {
			return nil, fmt.Errorf("keys[%d]: not a JSON object", i)
		}
		for _, m := range privateMembers {
			if _, ok := members[m]; ok {
				return nil, fmt.Errorf("keys[%d]: holds private or symmetric key material (%q); a verification key set must be public", i, m)
			}
		}
		key, err := jwk.ParseKey(raw)
		if err != nil {
			return nil, fmt.Errorf("keys[%d]: not a usable JWK: %v", i, err)
		}
		if use := key.KeyUsage(); use != "" && use != "sig" {
			continue
		}
		if alg := key.Algorithm().String(); alg != "" && !jwsAlgorithms[alg] {
			continue // a key-encryption algorithm (RSA-OAEP, ECDH-ES...): not a signature key
		}
		if err := checkVerificationKey(key); err != nil {
			return nil, fmt.Errorf("keys[%d]: %w", i, err)
		}
		kid := key.KeyID()
		if _, dup := st.byKID[kid]; dup {
			return nil, fmt.Errorf("keys[%d]: duplicate kid %q", i, kid)
		}
		st.byKID[kid] = key
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("the key set has no signature keys")
	}
	if len(keys) > 1 {
		if _, ok := st.byKID[""]; ok {
			return nil, errors.New("a key without kid in a set of several keys: it could never be selected")
		}
	}
	st.n = len(keys)
	if st.n == 1 {
		st.only = keys[0]
	}
	// The digest covers what verification depends on: kid, alg, use and
	// the key itself (its RFC 7638 thumbprint), in kid order.
	slices.SortFunc(keys, func(a, b jwk.Key) int { return strings.Compare(a.KeyID(), b.KeyID()) })
	for _, key := range keys {
		tp, err := key.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("kid %q: %v", key.KeyID(), err)
		}
		fmt.Fprintf(h, "%q %q %q %x\n", key.KeyID(), key.Algorithm().String(), key.KeyUsage(), tp)
	}
	h.Sum(st.digest[:0])
	return st, nil
}

// jwsAlgorithms are the "alg" values of RFC 7518 §3.1 and RFC 8037 §3.1,
// supported or not: a key with another alg is an encryption key.
var jwsAlgorithms = map[string]bool{
	"HS256": true, "HS384": true, "HS512": true, "RS256": true, "RS384": true, "RS512": true,
	"ES256": true, "ES384": true, "ES512": true, "ES256K": true, "PS256": true, "PS384": true, "PS512": true,
	"EdDSA": true, "none": true,
}

// checkVerificationKey takes public signature keys of the supported types.
func checkVerificationKey(key jwk.Key) error {
	var raw any
	if err := key.Raw(&raw); err != nil {
		return fmt.Errorf("unusable key: %v", err)
	}
	alg := key.Algorithm().String()
	var algs []string
	switch pub := raw.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key of %d bits; at least %d required", pub.N.BitLen(), minRSABits)
		}
		algs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case *ecdsa.PublicKey:
		a, err := ecdsaAlgorithm(pub.Curve)
		if err != nil {
			return err
		}
		algs = []string{a}
	case ed25519.PublicKey:
		algs = []string{"EdDSA"}
	default:
		// Private keys are refused before; this is oct, X25519 and the rest.
		return fmt.Errorf("unsupported key type %s", key.KeyType())
	}
	if alg != "" && !slices.Contains(algs, alg) {
		return fmt.Errorf("alg %q does not fit a %s key", alg, key.KeyType())
	}
	return nil
}
