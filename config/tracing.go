package config

import (
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
)

// Tracing sends OpenTelemetry traces of the checks to an OTLP collector:
// a span per check, with the token's verification, the policy's
// evaluation and the decision as its children (docs/tracing.md). Off
// unless enabled. A span carries codes and counts, never a token or a
// header's value. Changing any of it needs a restart.
type Tracing struct {
	// Enabled turns tracing on. Empty (false): no span is made, at no
	// cost to a check.
	Enabled bool `yaml:"enabled"`
	// Endpoint is the collector's host:port. Empty: 127.0.0.1:4317 for
	// grpc, 127.0.0.1:4318 for http (a collector agent beside guestgate).
	Endpoint string `yaml:"endpoint"`
	// Protocol is OTLP's transport: grpc or http (protobuf over HTTP).
	// Empty: grpc.
	Protocol string `yaml:"protocol"`
	// URLPath is where an http collector takes traces. Empty: /v1/traces.
	// Only for protocol http.
	URLPath string `yaml:"url_path"`
	// SampleRatio is the fraction of checks traced, 0 to 1, for a request
	// that comes without a trace context; one that comes with a
	// traceparent follows its sampled flag, so a trace is kept or dropped
	// whole. Empty: 1.
	SampleRatio *float64 `yaml:"sample_ratio"`
	// Insecure sends the spans in plaintext. Empty (false): TLS, trusting
	// the system's roots and CAFile.
	Insecure bool `yaml:"insecure"`
	// CAFile is a PEM bundle of the CAs the collector's certificate is
	// checked against, instead of the system's roots. Empty: the system's.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate and its key (PEM),
	// for a collector that asks for one. Both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServiceName is the service.name of the spans. Empty: guestgate.
	ServiceName string `yaml:"service_name"`
}

// Tracing protocols and defaults.
const (
	TracingGRPC = "grpc"
	TracingHTTP = "http"

	DefaultTracingGRPCEndpoint = "127.0.0.1:4317"
	DefaultTracingHTTPEndpoint = "127.0.0.1:4318"
	DefaultTracingURLPath      = "/v1/traces"
	DefaultTracingServiceName  = "guestgate"
)

// Ratio is SampleRatio, defaulted.
func (t Tracing) Ratio() float64 {
	if t.SampleRatio == nil {
		return 1
	}
	return *t.SampleRatio
}

// Equal says whether t and o configure the same tracing (SampleRatio
// compared by value).
func (t Tracing) Equal(o Tracing) bool {
	a, b := t, o
	a.SampleRatio, b.SampleRatio = nil, nil
	return a == b && t.Ratio() == o.Ratio()
}

func (t *Tracing) resolvePaths(abs func(*string)) {
	abs(&t.CAFile)
	abs(&t.CertFile)
	abs(&t.KeyFile)
}

func (t *Tracing) applyDefaults() {
	if t.Protocol == "" {
		t.Protocol = TracingGRPC
	}
	if t.Endpoint == "" {
		switch t.Protocol {
		case TracingGRPC:
			t.Endpoint = DefaultTracingGRPCEndpoint
		case TracingHTTP:
			t.Endpoint = DefaultTracingHTTPEndpoint
		}
	}
	if t.URLPath == "" && t.Protocol == TracingHTTP {
		t.URLPath = DefaultTracingURLPath
	}
	if t.ServiceName == "" {
		t.ServiceName = DefaultTracingServiceName
	}
	if t.SampleRatio == nil {
		v := 1.0
		t.SampleRatio = &v
	}
}

// validate adds every problem of the tracing section, whether or not it is
// enabled: a mistake shows before the day it is turned on.
func (t *Tracing) validate(add func(key, format string, args ...any)) {
	switch t.Protocol {
	case TracingGRPC, TracingHTTP:
	default:
		add("tracing.protocol", "%q is not one of grpc, http", t.Protocol)
	}
	if host, port, err := net.SplitHostPort(t.Endpoint); err != nil || host == "" || !validPort(port) {
		add("tracing.endpoint", "%q is not host:port, such as %q (no scheme, no path)", t.Endpoint, DefaultTracingGRPCEndpoint)
	}
	switch {
	case t.Protocol != TracingHTTP && t.URLPath != "":
		add("tracing.url_path", "only protocol http has a URL path")
	case t.Protocol == TracingHTTP && (!strings.HasPrefix(t.URLPath, "/") || strings.ContainsAny(t.URLPath, "?# \t\r\n")):
		add("tracing.url_path", "%q must be a plain path starting with /, such as %q", t.URLPath, DefaultTracingURLPath)
	}
	if r := *t.SampleRatio; math.IsNaN(r) || r < 0 || r > 1 {
		add("tracing.sample_ratio", "must be between 0 and 1")
	}
	if t.Insecure {
		for key, f := range map[string]string{"tracing.ca_file": t.CAFile, "tracing.cert_file": t.CertFile, "tracing.key_file": t.KeyFile} {
			if f != "" {
				add(key, "insecure sends plaintext: TLS files have no use (set insecure: false, or drop the file)")
			}
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		add("tracing.cert_file", "a client certificate needs both cert_file and key_file")
	}
	if len(t.ServiceName) > 128 || strings.IndexFunc(t.ServiceName, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		add("tracing.service_name", "must be at most 128 printable characters")
	}
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n < 65536 && strings.Trim(p, "0123456789") == ""
}

// String names where the spans go, for the log.
func (t Tracing) String() string {
	scheme := "https"
	if t.Insecure {
		scheme = "http"
	}
	return fmt.Sprintf("otlp/%s %s://%s%s", t.Protocol, scheme, t.Endpoint, t.URLPath)
}
