package wiring

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/tokens"
)

// The development keys and secrets are published in this repository
// (testdata/dev): anyone can sign with them. The development setup is held
// to loopback, but a copy of its files in a real config would otherwise
// serve real traffic with public keys. So outside the development setup
// guestgate refuses any key or secret whose fingerprint is one of these.
// TestDevelopmentFingerprintsMatchTheCommittedFiles keeps the list equal
// to the files.
var developmentFingerprints = map[string]string{
	"key:c3fd24ae10007354ed7866cc38d3164ed6d3d91eaeddd9c84010cfdd0c84dc10":    "keys/access-dev-1.pem",
	"key:92c880c93aa7fe912a94d1385534e365258daf2b1e41fd99d48a13c76ae28a5c":    "keys/sat-dev-0.pem",
	"key:d10a7a1591a15f47a8422854b63ce03bd563bf3f7618d592f16bf7c8312a2a7d":    "keys/sat-dev-1.pem",
	"key:b3ea17102a32844728a2d8a5742546bed215ff1e706740c630daa1409bbf5bd0":    "keys/xbs-dev-1.pem",
	"secret:613fcbe715375dee90489469c91072c9dcd4888750b089afe337184a9bcd3952": "secrets/guest-dev.b64",
	"secret:fb17bbad183a891305351f6aa7e0f29d841d9f725cf900a052f912490582588f": "secrets/guest-partner2-dev.b64",
	"secret:aabed5a221eae60e646f2c29c159fb059ec05b16c794f7f28b787d5aa829a1c4": "secrets/sat-admin-dev.secret",
	"secret:8c1c13e909f3eefc9f51799590253958fb407e7c286b0c5572ba5ce0dd54d71a": "secrets/sat-launchpad-dev.secret",
}

// keyFingerprint is the hex SHA-256 thumbprint (RFC 7638) of a key's public
// part: a private key and its public JWKS entry have the same one.
func keyFingerprint(k jwk.Key) (string, error) {
	pub, err := k.PublicKey()
	if err != nil {
		return "", err
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return "key:" + hex.EncodeToString(tp), nil
}

// secretFingerprint names a secret by the hash of its bytes (the decoded
// HMAC key for a guest secret).
func secretFingerprint(secret []byte) string {
	sum := sha256.Sum256(secret)
	return "secret:" + hex.EncodeToString(sum[:])
}

// publishedCredential refuses a key or secret whose fingerprint is one of
// the published development credentials, naming the config key that holds
// it (never the secret).
func publishedCredential(key, fp string) error {
	if file, ok := developmentFingerprints[fp]; ok {
		return fmt.Errorf("%s: this is the published development credential testdata/dev/%s, which anyone can sign with; outside the development setup, use your own", key, file)
	}
	return nil
}

// refuseDevelopmentMaterial refuses a config that is not the development
// setup but verifies with a published development key or secret (trusted
// issuers' key sets and guest secrets, SAT integrations' secrets). The
// minting keys are checked where SignerConfig loads them.
func refuseDevelopmentMaterial(cfg *config.Config) error {
	if cfg.Development {
		return nil
	}
	check := publishedCredential
	for i, ti := range cfg.Tokens.Issuers {
		key := fmt.Sprintf("tokens.issuers[%d]", i)
		var set jwk.Set
		var err error
		switch {
		case ti.JWKSFile != "":
			key += ".jwks_file"
			var b []byte
			if b, err = os.ReadFile(ti.JWKSFile); err == nil {
				set, err = jwk.Parse(b)
			}
		case ti.JWKS != "":
			key += ".jwks"
			set, err = jwk.Parse([]byte(ti.JWKS))
		case ti.Secret != "":
			key += secretKey(ti.SecretFile)
			secret, err := tokens.DecodeGuestSecret(ti.Secret)
			if err != nil {
				continue // refused with its reason when the verifier is built
			}
			if err := check(key, secretFingerprint(secret)); err != nil {
				return err
			}
		}
		if err != nil {
			continue // refused with its reason when the verifier is built
		}
		for j := 0; set != nil && j < set.Len(); j++ {
			k, _ := set.Key(j)
			if fp, err := keyFingerprint(k); err == nil {
				if err := check(key, fp); err != nil {
					return err
				}
			}
		}
	}
	for i, in := range cfg.Issuer.Integrations {
		key := fmt.Sprintf("issuer.integrations[%d]", i) + secretKey(in.SecretFile)
		if err := check(key, secretFingerprint([]byte(in.Secret))); err != nil {
			return err
		}
	}
	return nil
}

// secretKey is the config key a secret came from.
func secretKey(secretFile string) string {
	if secretFile != "" {
		return ".secret_file"
	}
	return ".secret_env"
}
