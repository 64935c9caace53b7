package tokens

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// wycheproofOverrides are the Wycheproof labels that cannot hold for a
// strict verifier with one allow-listed algorithm per key. For each, the
// test checks that the outcome is indeed the opposite of the label, so the
// list never silently goes stale.
var wycheproofOverrides = func() map[int]string {
	const (
		pss = "PS256/384/512 is never on an allow-list: jwx verifies RSASSA-PSS with any salt " +
			"length, RFC 7518 §3.5 fixes it to the hash size"
		samePS = "RFC 7520 Figure 20 is PS384 under a key whose alg is PS256: a key has one " +
			"algorithm (RFC 8725 §3.1), and PS* is not supported"
		es521 = "RFC 7520 Figure 27 is ES512 under a key whose alg says \"ES521\" (no such " +
			"algorithm): the key's alg must be the token's"
		sameBytes = "the same bytes as tcId 357, which is labelled valid (the padding this " +
			"case is about was lost from the vector)"
		badChar = "a '?' inside a segment: RFC 7515 §2 allows no character outside base64url; " +
			"lenient decoders skip it, the strict parser refuses it"
		highS = "an ECDSA signature whose S is above n/2: (R, S) and (R, n-S) both verify, " +
			"so the verifier takes only the low form (one token, one encoding)"
	)
	o := map[int]string{346: samePS, 350: samePS, 347: es521, 351: es521,
		367: sameBytes, 370: sameBytes, 372: badChar, 373: badChar, 18: highS}
	for _, id := range []int{272, 273, 274, 275, 287, 288, 320, 321, 322, 323, 325, 326, 327, 328} {
		o[id] = pss
	}
	return o
}()

type wycheproofFile struct {
	NumberOfTests int `json:"numberOfTests"`
	TestGroups    []struct {
		Comment string          `json:"comment"`
		Private json.RawMessage `json:"private"`
		Public  json.RawMessage `json:"public"`
		Tests   []struct {
			TcID    int    `json:"tcId"`
			Comment string `json:"comment"`
			JWS     string `json:"jws"`
			Result  string `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// TestWycheproofJSONWebSignature runs every Wycheproof JWS case against the
// signature layer: parseCompact (size, segments, base64url, header JSON,
// header rules), the group key's algorithm as the only one allowed, the
// key checks and jwx's verifier. Payloads are not claim sets, so the JWT
// layer is not involved.
func TestWycheproofJSONWebSignature(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "wycheproof", "json_web_signature_test.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file wycheproofFile
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, g := range file.TestGroups {
		keyJSON := g.Public
		if keyJSON == nil {
			keyJSON = g.Private
		}
		key, keyErr := jwk.ParseKey(keyJSON)
		for _, tc := range g.Tests {
			seen++
			err := keyErr
			if err == nil {
				err = wycheproofVerify(tc.JWS, key)
			}
			accepted := err == nil
			wantAccepted := tc.Result == "valid"
			reason, overridden := wycheproofOverrides[tc.TcID]
			if overridden {
				wantAccepted = !wantAccepted
			}
			if accepted != wantAccepted {
				t.Errorf("tcId %d (%s, %s): labelled %s, accepted=%v (err %v)%s",
					tc.TcID, g.Comment, tc.Comment, tc.Result, accepted, err, map[bool]string{true: " [override: " + reason + "]"}[overridden])
			}
		}
	}
	if seen != file.NumberOfTests {
		t.Fatalf("ran %d cases, the file has %d", seen, file.NumberOfTests)
	}
}

// wycheproofVerify is the signature layer with key's algorithm allowed.
func wycheproofVerify(raw string, key jwk.Key) error {
	c, err := parseCompact(raw, DefaultMaxTokenSize)
	if err != nil {
		return err
	}
	allowed := key.Algorithm().String()
	if allowed == "" { // an issuer configures one algorithm per key; take the key type's usual one
		switch key.KeyType() {
		case jwa.RSA:
			allowed = "RS256"
		case jwa.EC:
			allowed = "ES256"
		case jwa.OctetSeq:
			allowed = "HS256"
		}
	}
	alg, ok := asymmetricAlgorithms[allowed]
	if !ok {
		alg, ok = symmetricAlgorithms[allowed]
	}
	if !ok || c.alg != allowed {
		return errorf(CodeBadAlgorithm, "alg is not on the allow-list")
	}
	raw2, err := usableKey(alg, key)
	if err != nil {
		return err
	}
	return verifySignature(c, alg, raw2)
}
