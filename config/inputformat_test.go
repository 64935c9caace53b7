package config

import (
	"strings"
	"testing"
)

func TestInputFormatKeys(t *testing.T) {
	for _, tc := range []struct {
		name, doc, wantErr string
		show               bool
	}{
		{"guestgate's format hides the credential", "", "", false},
		{"opa-envoy's shows it", "check:\n  input_format: opa-envoy\n", "", true},
		{"opa-envoy's hides it when told", "check:\n  input_format: opa-envoy\n  show_credential_to_policy: false\n", "", false},
		{"an unknown format is refused", "check:\n  input_format: opa\n", "check.input_format", false},
		{"dry_run needs the opa-envoy format", "check:\n  dry_run: true\n", "check.dry_run", false},
		{"both body skips are refused", "check:\n  skip_request_body_parse: true\n  skip_unparsable_body: true\n", "check.skip_unparsable_body", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.doc), t.TempDir())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Check.ShowsCredential() != tc.show {
				t.Fatalf("ShowsCredential = %v, want %v", !tc.show, tc.show)
			}
		})
	}
}
