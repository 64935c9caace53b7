// Package ext_authz is guestgate's check: Envoy's ext_authz gRPC server
// and, sharing everything but the wire, the HTTP forms of the same check.
//
// One check passes through these files, in this order, each holding one
// step:
//
//   - codec.go decodes the CheckRequest off the wire (its headers by hand,
//     the rest with the protobuf runtime).
//   - server.go is the gRPC surface: the Checker, its settings, its health
//     service and the Check handler.
//   - check.go runs one check from start to end, calling each step below
//     in turn, verifying the token, and logging the Decision it ends with.
//   - request.go reads the CheckRequest: the path checked and split, the
//     query parsed, the credential found, the body parsed (jsonvalue.go
//     for JSON).
//   - input.go builds the policy's input document for the serving policy
//     revision: only what that revision can read, on demand, with the
//     credential redacted.
//   - evaluation.go asks that revision for its decision.
//   - response.go reads the decision and shapes it into the answer: the
//     headers validated and encoded, the identity and credential headers
//     settled on the way upstream, a denial's body, the CheckResponse.
//
// Beside them, http.go serves the HTTP forms of the check and
// decide_endpoint.go the admin decision endpoint: each builds the
// CheckRequest Envoy would have sent and runs the same check. trace.go
// traces a check, when tracing is on: a span for it, under the request's
// traceparent, and one for each of verifying, evaluating and deciding.
// CheckRequest Envoy would have sent and runs the same check. Once a
// check's answer is settled, shadow.go hands it to the shadow policy, off
// the answer's path; inspect.go runs a check for an operator (the decision
// endpoint, `guestgate check`) with the shadow's answer and why each policy
// decided; opalog.go turns a decision into an event of OPA's decision log.
//
// Whatever goes wrong in between denies.
package ext_authz
