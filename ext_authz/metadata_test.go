package ext_authz

import (
	"math"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Envoy's metadata reaches the policy through protojson. A message that
// does not render (a NaN number, which protojson refuses) must deny the
// check, not vanish from the input: a policy that denies on a metadata
// field would otherwise see nothing there and allow.
func TestMetadataThatCannotBeShownToThePolicyDenies(t *testing.T) {
	const policy = `package guestgate.authz

default decision := false

decision if not input.attributes.metadataContext.filterMetadata.waf.blocked
`
	h := startHarness(t, policy, true)
	fields := map[string]*structpb.Value{"blocked": structpb.NewBoolValue(true), "score": structpb.NewNumberValue(math.NaN())}
	req := checkRequest("GET", "/x", nil, "")
	req.Attributes.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"waf": {Fields: fields}}}
	denied(t, h.check(t, req), 400, ReasonBadRequest)

	// The same metadata without the NaN is read, and the policy denies on it.
	delete(fields, "score")
	denied(t, h.check(t, req), 403, ReasonDeniedPolicy)
	req.Attributes.MetadataContext = nil
	if resp := h.check(t, req); resp.GetOkResponse() == nil {
		t.Fatalf("without metadata the policy allows; got %v", resp)
	}
}
