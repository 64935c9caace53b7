package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestTracingIsOffByDefaultWithACollectorOnLoopback(t *testing.T) {
	c, err := parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	tr := c.Tracing
	if tr.Enabled {
		t.Error("tracing is on in an empty config")
	}
	if tr.Protocol != TracingGRPC || tr.Endpoint != DefaultTracingGRPCEndpoint || tr.URLPath != "" ||
		tr.Ratio() != 1 || tr.Insecure || tr.ServiceName != DefaultTracingServiceName {
		t.Errorf("tracing = %+v", tr)
	}
	t.Chdir("..")
	dev, err := Development()
	if err != nil {
		t.Fatal(err)
	}
	if dev.Tracing.Enabled {
		t.Error("tracing is on in the development setup")
	}
}

func TestTracingDefaultsFollowTheProtocol(t *testing.T) {
	c, err := parse(t, "tracing:\n  enabled: true\n  protocol: http\n  sample_ratio: 0\n  ca_file: certs/ca.pem\n")
	if err != nil {
		t.Fatal(err)
	}
	tr := c.Tracing
	if tr.Endpoint != DefaultTracingHTTPEndpoint || tr.URLPath != DefaultTracingURLPath {
		t.Errorf("http defaults: endpoint %q, url_path %q", tr.Endpoint, tr.URLPath)
	}
	if tr.Ratio() != 0 {
		t.Errorf("sample_ratio 0 read as %v: a written 0 is not the default", tr.Ratio())
	}
	if !filepath.IsAbs(tr.CAFile) || !strings.HasSuffix(tr.CAFile, filepath.Join("certs", "ca.pem")) {
		t.Errorf("ca_file %q is not resolved against the config's directory", tr.CAFile)
	}
}

func TestBadTracingErrorsNameTheKey(t *testing.T) {
	cases := []struct{ name, doc, key string }{
		{"unknown protocol", "protocol: zipkin", "tracing.protocol"},
		{"endpoint with a scheme", "endpoint: http://collector:4317", "tracing.endpoint"},
		{"endpoint without a port", "endpoint: collector", "tracing.endpoint"},
		{"endpoint with a bad port", "endpoint: collector:0", "tracing.endpoint"},
		{"endpoint without a host", "endpoint: ':4317'", "tracing.endpoint"},
		{"url path on grpc", "url_path: /v1/traces", "tracing.url_path"},
		{"relative url path", "protocol: http\n  url_path: v1/traces", "tracing.url_path"},
		{"url path with a query", "protocol: http\n  url_path: /v1/traces?x=1", "tracing.url_path"},
		{"ratio above 1", "sample_ratio: 1.5", "tracing.sample_ratio"},
		{"negative ratio", "sample_ratio: -0.1", "tracing.sample_ratio"},
		{"ratio not a number", "sample_ratio: .nan", "tracing.sample_ratio"},
		{"ratio of the wrong type", "sample_ratio: half", "half"},
		{"insecure with a CA", "insecure: true\n  ca_file: ca.pem", "tracing.ca_file"},
		{"insecure with a client certificate", "insecure: true\n  cert_file: c.pem\n  key_file: k.pem", "tracing.cert_file"},
		{"certificate without its key", "cert_file: c.pem", "tracing.cert_file"},
		{"key without its certificate", "key_file: k.pem", "tracing.cert_file"},
		{"service name with a newline", "service_name: \"guest\\ngate\"", "tracing.service_name"},
		{"unknown key", "sampler: always", "sampler"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Refused whether or not tracing is on.
			for _, enabled := range []string{"true", "false"} {
				_, err := parse(t, "tracing:\n  enabled: "+enabled+"\n  "+tc.doc+"\n")
				if err == nil || !strings.Contains(err.Error(), tc.key) {
					t.Fatalf("enabled %s: error %v does not name %s", enabled, err, tc.key)
				}
			}
		})
	}
}

func TestTracingEqualComparesTheRatioByValue(t *testing.T) {
	a, b, half := 1.0, 1.0, 0.5
	cases := []struct {
		name string
		x, y Tracing
		want bool
	}{
		{"same ratio, two pointers", Tracing{Enabled: true, SampleRatio: &a}, Tracing{Enabled: true, SampleRatio: &b}, true},
		{"unset is 1", Tracing{SampleRatio: &a}, Tracing{}, true},
		{"another ratio", Tracing{SampleRatio: &a}, Tracing{SampleRatio: &half}, false},
		{"another endpoint", Tracing{Endpoint: "a:1"}, Tracing{Endpoint: "b:1"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.x.Equal(tc.y); got != tc.want {
				t.Fatalf("Equal = %v, want %v", got, tc.want)
			}
		})
	}
}
