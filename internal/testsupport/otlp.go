package testsupport

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// Collector is an OpenTelemetry collector's trace receiver, in process:
// OTLP over gRPC (collectortrace.TraceServiceServer) and over HTTP
// (ServeHTTP: protobuf POSTed to URLPath). It keeps every request it
// receives.
type Collector struct {
	collectortrace.UnimplementedTraceServiceServer
	// URLPath is the path the HTTP receiver takes exports at.
	URLPath string
	// Discard answers without keeping: a benchmark's collector.
	Discard atomic.Bool

	mu   sync.Mutex
	reqs []*collectortrace.ExportTraceServiceRequest
}

// StartGRPCCollector serves a Collector over plaintext gRPC on
// 127.0.0.1:0 until the test ends, and returns it with its address.
func StartGRPCCollector(tb testing.TB, opts ...grpc.ServerOption) (*Collector, string) {
	tb.Helper()
	c := &Collector{}
	srv := grpc.NewServer(opts...)
	collectortrace.RegisterTraceServiceServer(srv, c)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	tb.Cleanup(srv.Stop)
	return c, lis.Addr().String()
}

// Export keeps req.
func (c *Collector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	if c.Discard.Load() {
		return &collectortrace.ExportTraceServiceResponse{}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqs = append(c.reqs, proto.Clone(req).(*collectortrace.ExportTraceServiceRequest))
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// ServeHTTP is the OTLP/HTTP receiver: a protobuf export POSTed to URLPath.
func (c *Collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != c.URLPath || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "not an OTLP/HTTP protobuf export", http.StatusNotFound)
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	req := &collectortrace.ExportTraceServiceRequest{}
	if err == nil {
		err = proto.Unmarshal(b, req)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp, _ := c.Export(r.Context(), req)
	out, _ := proto.Marshal(resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// Received returns every span received, the attributes of the resources
// they came under, and the whole of every request as text (to search for
// what must not be there).
func (c *Collector) Received() (spans []*tracev1.Span, resource []*commonv1.KeyValue, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var all strings.Builder
	for _, req := range c.reqs {
		all.WriteString(prototext.Format(req))
		for _, rs := range req.GetResourceSpans() {
			resource = append(resource, rs.GetResource().GetAttributes()...)
			for _, ss := range rs.GetScopeSpans() {
				spans = append(spans, ss.GetSpans()...)
			}
		}
	}
	return spans, resource, all.String()
}
