package config

import (
	"errors"
	"net/url"
	"strings"
	"time"
)

// OPADecisionLog sends every decision, in OPA's decision-log event format,
// to an HTTP endpoint that takes OPA's decision logs (a log pipeline, a
// control plane): batched, gzip-compressed, from a bounded buffer, retried
// with backoff while the endpoint fails. Each event carries what the
// one-line decision log carries (method, path without its query, the
// codes, who the verified token names, the policy revision) and never a
// token, a header, a query string or a body.
type OPADecisionLog struct {
	// URL is where the events are sent: POST, a JSON array of events, as
	// OPA's decision_logs plugin sends to its service's /logs resource.
	// Required: https, or http on a loopback address.
	URL string `yaml:"url"`
	// BatchSize is the most events one upload carries. Empty: 100.
	BatchSize int `yaml:"batch_size"`
	// BatchInterval is the longest an event waits for its batch to fill
	// before the batch is sent anyway. Empty: 5s.
	BatchInterval Duration `yaml:"batch_interval"`
	// Buffer bounds the events waiting to be sent while an upload is on
	// its way or the endpoint fails: beyond it, events are dropped and
	// counted (guestgate_opa_decision_logs_dropped_total). Empty: 10000.
	Buffer int `yaml:"buffer"`
	// Gzip compresses each upload (Content-Encoding: gzip), as OPA does.
	// Empty: true.
	Gzip *bool `yaml:"gzip"`
	// Timeout bounds one upload. Empty: 10s.
	Timeout Duration `yaml:"timeout"`
	// MaxRetryDelay caps the backoff between attempts of a failing upload
	// (it starts at 1s and doubles, with jitter). Empty: 1m.
	MaxRetryDelay Duration `yaml:"max_retry_delay"`
	// BearerTokenFile or BearerTokenEnv holds a token sent as
	// Authorization: Bearer with every upload; at most one. Empty: none.
	BearerTokenFile string `yaml:"bearer_token_file"`
	BearerTokenEnv  string `yaml:"bearer_token_env"`

	// BearerToken is the token read from BearerTokenFile or BearerTokenEnv.
	BearerToken string `yaml:"-"`
}

// Defaults of decision_log.opa.
const (
	DefaultOPALogBatchSize     = 100
	DefaultOPALogBatchInterval = 5 * time.Second
	DefaultOPALogBuffer        = 10000
	DefaultOPALogTimeout       = 10 * time.Second
	DefaultOPALogMaxRetryDelay = time.Minute
)

// GzipOn is Gzip with its default.
func (o *OPADecisionLog) GzipOn() bool { return o.Gzip == nil || *o.Gzip }

func (o *OPADecisionLog) resolvePaths(abs func(*string)) { abs(&o.BearerTokenFile) }

func (o *OPADecisionLog) applyDefaults() {
	if o.BatchSize == 0 {
		o.BatchSize = DefaultOPALogBatchSize
	}
	if o.BatchInterval == 0 {
		o.BatchInterval = Duration(DefaultOPALogBatchInterval)
	}
	if o.Buffer == 0 {
		o.Buffer = DefaultOPALogBuffer
	}
	if o.Timeout == 0 {
		o.Timeout = Duration(DefaultOPALogTimeout)
	}
	if o.MaxRetryDelay == 0 {
		o.MaxRetryDelay = Duration(DefaultOPALogMaxRetryDelay)
	}
}

func (o *OPADecisionLog) readSecrets() error {
	tok, err := readSecret("decision_log.opa", o.BearerTokenFile, o.BearerTokenEnv)
	// readSecret names the keys of a secret_file/secret_env pair; these
	// are called bearer_token_file and bearer_token_env.
	if fe := (*FieldError)(nil); errors.As(err, &fe) {
		fe.Key = strings.Replace(fe.Key, ".secret_", ".bearer_token_", 1)
		fe.Msg = strings.NewReplacer("secret_file", "bearer_token_file", "secret_env", "bearer_token_env").Replace(fe.Msg)
	}
	o.BearerToken = tok
	return err
}

// validate adds every problem of the decision_log.opa section.
func (o *OPADecisionLog) validate(add func(key, format string, args ...any)) {
	const key = "decision_log.opa"
	switch u, err := url.Parse(o.URL); {
	case o.URL == "":
		add(key+".url", "required: where the decision logs are sent")
	case err != nil || u.Host == "" || u.User != nil || u.Fragment != "":
		add(key+".url", "%q is not an http(s) URL without user info or fragment", o.URL)
	case u.Scheme != "https" && !isLoopbackURL(o.URL):
		add(key+".url", "must be https (http only on a loopback address)")
	}
	if o.BatchSize < 1 || o.BatchSize > 10000 {
		add(key+".batch_size", "must be between 1 and 10000")
	}
	if o.BatchInterval.D() < 10*time.Millisecond {
		add(key+".batch_interval", "must be at least 10ms")
	}
	if o.Buffer < 1 || o.Buffer > 1<<20 {
		add(key+".buffer", "must be between 1 and 1048576")
	}
	if o.MaxRetryDelay.D() < time.Second {
		add(key+".max_retry_delay", "must be at least 1s")
	}
}
