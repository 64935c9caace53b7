package wiring

// What the external tests (package wiring_test, which may use
// internal/testsupport: that package imports this one) read of the
// refusal list.
var (
	DevelopmentFingerprints = developmentFingerprints
	KeyFingerprint          = keyFingerprint
	SecretFingerprint       = secretFingerprint
)
