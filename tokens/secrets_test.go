package tokens

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestGuestSecretDecodesEveryBase64Form(t *testing.T) {
	// 33 bytes whose encoding uses both alphabet-specific characters and
	// needs padding: 0xfb 0xff encodes as "+/" or "-_".
	secret := bytes.Repeat([]byte{0xfb, 0xff, 0xbf}, 11)
	secret = append(secret, 0xfb, 0xef) // 35 bytes: one "=" of padding
	for name, enc := range map[string]*base64.Encoding{
		"standard padded":   base64.StdEncoding,
		"standard unpadded": base64.RawStdEncoding,
		"URL padded":        base64.URLEncoding,
		"URL unpadded":      base64.RawURLEncoding,
	} {
		t.Run(name, func(t *testing.T) {
			got, err := DecodeGuestSecret(enc.EncodeToString(secret))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, secret) {
				t.Fatal("decoded secret differs")
			}
		})
	}
}

func TestGuestSecretRefusesAnythingElse(t *testing.T) {
	good := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb, 0xff, 0xbf}, 11)) // 44 chars, "+/" inside
	std := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))                 // ends in "="
	tests := []struct {
		name, b64, want string
	}{
		{"empty", "", "empty"},
		{"short", base64.StdEncoding.EncodeToString(make([]byte, 31)), "31 bytes"},
		{"leading space", " " + good, "outside"},
		{"trailing newline", good + "\n", "outside"},
		{"line break inside", good[:20] + "\r\n" + good[20:], "outside"},
		{"tab", good[:20] + "\t" + good[20:], "outside"},
		{"mixed alphabets", strings.Replace(good, "+", "-", 1), "mixes"},
		{"garbage", "this is not base64 at all!!!!!!!!!!!!!!!!!!!!!", "outside"},
		{"percent-encoded", strings.ReplaceAll(good, "+", "%2B"), "outside"},
		{"padding inside", std[:10] + "=" + std[11:], "not base64"},
		{"too much padding", std + "=", "not base64"},
		{"wrong length", std[:len(std)-3], "not base64"},
		{"stray trailing bits", strings.TrimSuffix(std, "=")[:len(std)-2] + "B", "not base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeGuestSecret(tt.b64)
			if err == nil {
				t.Fatalf("accepted (%d bytes)", len(got))
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			for _, part := range []string{good[:12], std[:12]} {
				if strings.Contains(err.Error(), part) {
					t.Errorf("the error holds part of the secret")
				}
			}
		})
	}
}

func TestDevelopmentGuestSecretsDecode(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "dev", "secrets", "*.b64"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// Files end in a newline; the config loader trims it, as here.
		if _, err := DecodeGuestSecret(strings.TrimSpace(string(data))); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
	}
}

func TestSecretGenerationChangesWithTheSecretAndHidesIt(t *testing.T) {
	a := bytes.Repeat([]byte{1}, 32)
	b := bytes.Repeat([]byte{1}, 32)
	b[31] = 2
	ga, gb := SecretGeneration(a), SecretGeneration(b)
	if ga != SecretGeneration(bytes.Clone(a)) {
		t.Fatal("generation is not stable")
	}
	if ga == gb {
		t.Fatal("generation did not change with the secret")
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{16}$`).MatchString(ga) {
		t.Fatalf("generation %q is not 16 base64url characters", ga)
	}
	// The documented construction, so other implementations can match it.
	m := hmac.New(sha256.New, a)
	m.Write([]byte("guestgate guest-secret generation v1"))
	if want := base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:12]); ga != want {
		t.Fatalf("generation %q, want %q", ga, want)
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
		if strings.Contains(ga, enc.EncodeToString(a)[:8]) {
			t.Fatal("generation shows the secret")
		}
	}
}

func TestGuestPersonIDIsStableAndNeverCollidesAcrossIssuers(t *testing.T) {
	// Known answer: SHA-256("issuer-1" 0x00 "user-42"), first 16 bytes,
	// lower-case base32 without padding.
	sum := sha256.Sum256([]byte("issuer-1\x00user-42"))
	want := "guest-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:16]))
	if got := GuestPersonID("issuer-1", "user-42"); got != want {
		t.Fatalf("GuestPersonID = %q, want %q", got, want)
	}
	if !regexp.MustCompile(`^guest-[a-z2-7]{26}$`).MatchString(want) {
		t.Fatalf("person id %q has the wrong shape", want)
	}
	pairs := [][2]string{
		{"a", "bc"}, {"ab", "c"}, {"abc", ""}, {"", "abc"},
		{"a", "b\x00c"}, {"a\x00", "bc"},
		{"issuer-1", "user-42"}, {"issuer-2", "user-42"}, {"issuer-1", "user-43"},
	}
	seen := make(map[string][2]string)
	for _, p := range pairs {
		id := GuestPersonID(p[0], p[1])
		if other, dup := seen[id]; dup {
			t.Fatalf("%q and %q share person id %s", p, other, id)
		}
		seen[id] = p
		if id != GuestPersonID(p[0], p[1]) {
			t.Fatal("person id is not stable")
		}
	}
}

func TestMintGuestIsWhatAPartnerAppSends(t *testing.T) {
	secret := bytes.Repeat([]byte{9}, 32)
	exp := time.Unix(1_750_003_600, 0)
	raw, err := MintGuest(secret, "issuer-1", "user-42", "Ada Lovelace", exp)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("%d segments", len(parts))
	}
	header, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if string(header) != `{"alg":"HS256","typ":"JWT"}` {
		t.Fatalf("header %s", header)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if string(payload) != `{"exp":1750003600,"iss":"issuer-1","name":"Ada Lovelace","sub":"user-42"}` {
		t.Fatalf("payload %s", payload)
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(parts[0] + "." + parts[1]))
	if base64.RawURLEncoding.EncodeToString(m.Sum(nil)) != parts[2] {
		t.Fatal("signature is not HMAC-SHA256 of the signing input")
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if _, ok := claims["exp"].(float64); !ok {
		t.Fatal("exp is not a JSON number")
	}
}

func TestMintGuestRefusesBadInput(t *testing.T) {
	secret := bytes.Repeat([]byte{9}, 32)
	exp := time.Unix(1_750_003_600, 0)
	tests := []struct {
		name          string
		secret        []byte
		iss, sub, nam string
		exp           time.Time
	}{
		{"short secret", secret[:31], "i", "s", "n", exp},
		{"no iss", secret, "", "s", "n", exp},
		{"no sub", secret, "i", "", "n", exp},
		{"sub with a space", secret, "i", "a b", "n", exp},
		{"sub with a slash", secret, "i", "a/b", "n", exp},
		{"no exp", secret, "i", "s", "n", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := MintGuest(tt.secret, tt.iss, tt.sub, tt.nam, tt.exp); err == nil {
				t.Fatal("minted")
			}
		})
	}
}
