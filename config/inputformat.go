package config

// The input formats of check.input_format: the shape of the policy's input
// and of the answers the gRPC check gives.
const (
	// InputFormatGuestgate is guestgate's input (the default): opa-envoy-
	// plugin's, with guestgate's additions (input.token, token_error,
	// request_id) and its stricter answers (docs/opa-envoy.md).
	InputFormatGuestgate = "guestgate"
	// InputFormatOPAEnvoy is opa-envoy-plugin's input and answers, but for
	// guestgate's security decisions (docs/opa-envoy.md).
	InputFormatOPAEnvoy = "opa-envoy"
)

// OPAEnvoy says whether the check takes opa-envoy-plugin's input format.
func (c *Check) OPAEnvoy() bool { return c.InputFormat == InputFormatOPAEnvoy }

// ShowsCredential says whether the policy sees the credential's raw value:
// show_credential_to_policy, by default false, and true with the opa-envoy
// format (opa-envoy-plugin's policies read and verify the token themselves).
func (c *Check) ShowsCredential() bool {
	if c.ShowCredentialToPolicy != nil {
		return *c.ShowCredentialToPolicy
	}
	return c.OPAEnvoy()
}

func (c *Check) validateInputFormat(add func(key, format string, args ...any)) {
	switch c.InputFormat {
	case "", InputFormatGuestgate, InputFormatOPAEnvoy:
	default:
		add("check.input_format", "must be %q or %q, not %q", InputFormatGuestgate, InputFormatOPAEnvoy, c.InputFormat)
	}
	if c.DryRun && !c.OPAEnvoy() {
		add("check.dry_run", "is opa-envoy-plugin's dry-run and needs check.input_format %q (guestgate's own candidate policies run as policy.shadow)", InputFormatOPAEnvoy)
	}
	if c.SkipRequestBodyParse && c.SkipUnparsableBody {
		add("check.skip_unparsable_body", "has no effect with check.skip_request_body_parse, which parses no body at all")
	}
}
