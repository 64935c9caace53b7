// Package decisionlog sends decisions, as events of OPA's decision log, to
// an HTTP endpoint that takes OPA's decision logs: what OPA's decision_logs
// plugin uploads to its service's /logs resource (a JSON array of events,
// gzip-compressed), so that a pipeline built for OPA reads guestgate's
// decisions as it reads OPA's.
//
// A Sender batches the events it is handed (a batch is sent when it holds
// BatchSize events, or BatchInterval after its first), keeps at most
// Buffer events waiting and drops, counting them, those beyond; an upload
// that fails is retried with exponential backoff and jitter, one batch at
// a time, while the buffer fills behind it. It imports nothing of
// guestgate's: the check decides what an event holds.
//
// OPA's own plugin (v1/plugins/logs) does all this too, but only inside an
// OPA plugin manager: its services config, a storage and compiler of its
// own, a mask and a drop query evaluated for every event, and some 120
// packages more in the binary (an OCI registry client, OpenTelemetry), with
// timers that cannot be driven from a test. The event format is the part
// worth reusing, and Event is it, field for field.
package decisionlog

import "time"

// Event is one decision, in OPA's decision-log event format (OPA's
// logs.EventV1, as its decision_logs plugin uploads it). Fields guestgate
// has no use for are left out; every field here has OPA's name and meaning.
type Event struct {
	// Labels identify the instance (OPA: id, version and the configured
	// labels). The Sender sets them.
	Labels map[string]string `json:"labels"`
	// DecisionID is unique per decision; the Sender makes one when empty.
	DecisionID string `json:"decision_id"`
	// Revision is the policy revision (OPA's deprecated single-bundle
	// field), Bundles the same per bundle.
	Revision string                `json:"revision,omitempty"`
	Bundles  map[string]BundleInfo `json:"bundles,omitempty"`
	// Path is the decision asked for, slash-separated, without data
	// (guestgate/authz/decision).
	Path string `json:"path,omitempty"`
	// Input and Result are the input and the decision, as much of them as
	// the producer lets out (see Erased).
	Input  any `json:"input,omitempty"`
	Result any `json:"result,omitempty"`
	// Erased are the JSON pointers of what was left out of Input and
	// Result (OPA's mask policy reports its erasures the same way).
	Erased []string `json:"erased,omitempty"`
	// RequestedBy is who asked for the decision (OPA: the client's
	// address).
	RequestedBy string `json:"requested_by,omitempty"`
	// Timestamp is when the decision was made; the Sender's clock when
	// zero.
	Timestamp time.Time `json:"timestamp"`
	// Metrics are OPA-style timers (timer_server_handler_ns).
	Metrics map[string]any `json:"metrics,omitempty"`
}

// BundleInfo is a bundle's part of an event.
type BundleInfo struct {
	Revision string `json:"revision,omitempty"`
}
