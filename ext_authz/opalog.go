package ext_authz

import (
	"strings"

	"github.com/guestgate/guestgate/decisionlog"
)

// The decision as an event of OPA's decision log, for pipelines built for
// OPA (decisionlog sends it). It holds what the one-line decision log
// holds (observe, check.go) and nothing more: the method and the path
// without its query, the codes, who the verified token names, the policy
// revision. Never the token, a header, a cookie, the query or the body:
// Erased names what is left out, as OPA's mask policy does.

// OPALog is an Observer that hands every decision, unsampled, to an OPA
// decision-log sender.
type OPALog struct {
	sender interface{ Log(decisionlog.Event) bool }
	path   string
}

// NewOPALog sends decisions of the decision query (data.guestgate.authz.
// decision) to sender.
func NewOPALog(sender interface{ Log(decisionlog.Event) bool }, query string) *OPALog {
	return &OPALog{sender: sender, path: OPAPath(query)}
}

// Decided hands d to the sender; a full buffer drops it (the sender counts
// it).
func (l *OPALog) Decided(d *Decision) { l.sender.Log(d.OPAEvent(l.path)) }

// OPAPath is a decision query as OPA's decision log names it:
// data.guestgate.authz.decision is guestgate/authz/decision.
func OPAPath(query string) string {
	return strings.ReplaceAll(strings.TrimPrefix(query, "data."), ".", "/")
}

// opaErased are the parts of the input and of the decision an event leaves
// out.
var opaErased = []string{
	"/input/attributes/source", "/input/attributes/destination", "/input/attributes/request/http/headers",
	"/input/attributes/request/http/query", "/input/attributes/request/http/body", "/input/parsed_path",
	"/input/parsed_query", "/input/parsed_body", "/input/token/name", "/input/token/email", "/input/token/claims",
	"/result/headers", "/result/response_headers_to_add", "/result/request_headers_to_remove",
	"/result/query_parameters_to_set", "/result/query_parameters_to_remove", "/result/body", "/result/dynamic_metadata",
}

type opaInput struct {
	Attributes struct {
		Request struct {
			HTTP struct {
				Method string `json:"method"`
				Path   string `json:"path"` // without the query
			} `json:"http"`
		} `json:"request"`
	} `json:"attributes"`
	RequestID  string    `json:"request_id"`
	Token      *opaToken `json:"token"`       // null when none verified
	TokenError *string   `json:"token_error"` // null when one verified, or none was looked for
}

type opaToken struct {
	Kind    string `json:"kind"`
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
}

type opaResult struct {
	Allowed    bool   `json:"allowed"`
	HTTPStatus int    `json:"http_status"`
	Reason     string `json:"reason"`
}

// OPAEvent is d as an event of OPA's decision log for the decision at path
// (OPAPath). The Sender adds the labels, the decision id and the time.
func (d *Decision) OPAEvent(path string) decisionlog.Event {
	in := &opaInput{RequestID: d.RequestID}
	in.Attributes.Request.HTTP.Method, in.Attributes.Request.HTTP.Path = d.Method, d.Path
	if d.Kind != "" {
		in.Token = &opaToken{Kind: d.Kind, Issuer: d.Issuer, Subject: d.Subject}
	} else if d.TokenError != "" {
		code := d.TokenError
		in.TokenError = &code
	}
	return decisionlog.Event{
		Path:     path,
		Revision: d.Revision,
		Input:    in,
		Result:   &opaResult{Allowed: d.Allowed, HTTPStatus: d.Status, Reason: d.Reason},
		Erased:   opaErased,
		Metrics:  map[string]any{"timer_server_handler_ns": d.Latency.Nanoseconds()},
	}
}
