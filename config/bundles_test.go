package config

import (
	"strings"
	"testing"
)

const bundleDoc = `
services:
  acme:
    url: https://bundles.acme.example
bundles:
  authz:
    service: acme
    resource: bundles/guestgate.tar.gz
    persist: true
    signing:
      keyid: ci
keys:
  ci:
    algorithm: ES256
    key: "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"
persistence_directory: state
`

func TestOPABundleConfigIsReadAsOPAReadsIt(t *testing.T) {
	c, err := decode([]byte(bundleDoc), "/etc/guestgate")
	if err != nil {
		t.Fatal(err)
	}
	src, err := c.OPABundles.Source(nil, c.Policy.MaxRevisionBytes)
	if err != nil {
		t.Fatal(err)
	}
	if src.Name != "authz" || src.Resource != "bundles/guestgate.tar.gz" || src.Client.Service() != "acme" ||
		src.PersistDir != "/etc/guestgate/state/bundles/authz" || !src.Verification.SignatureRequired() {
		t.Errorf("source = %+v", src)
	}
}

func TestOPABundleConfigRefusals(t *testing.T) {
	for _, tc := range []struct{ name, from, to, want string }{
		{"keys without signing", "    signing:\n      keyid: ci\n", "", "add a signing section"},
		{"manual trigger", "    persist: true\n", "    persist: true\n    trigger: manual\n", "trigger mode mismatch"},
		{"two bundles", "keys:", "  other:\n    service: acme\n    signing:\n      keyid: ci\nkeys:", "exactly one"},
		{"unknown service", "    service: acme\n", "    service: nope\n", "nope"},
		{"no services", "services:\n  acme:\n    url: https://bundles.acme.example\n", "", "services"},
		{"a file resource", "resource: bundles/guestgate.tar.gz", "resource: file:///tmp/b.tar.gz", "file://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(bundleDoc, tc.from, tc.to, 1)
			c, err := decode([]byte(doc), "/etc/guestgate")
			if err != nil {
				t.Fatal(err)
			}
			var msgs []string
			c.OPABundles.validate(func(key, format string, args ...any) { msgs = append(msgs, key+": "+format) }, c.Policy.MaxRevisionBytes)
			_, err = c.OPABundles.Source(nil, c.Policy.MaxRevisionBytes)
			if len(msgs) == 0 || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("validate %q, Source error %v; want one saying %q", msgs, err, tc.want)
			}
		})
	}
}
