package load

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// TestGCCountsTheCollectionsOfTheServedGoCollector reads a real /metrics
// page served by the Prometheus Go collector, as guestgate's admin listener
// serves it: collections forced in between are counted.
func TestGCCountsTheCollectionsOfTheServedGoCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	p := &Process{Name: "server", Admin: strings.TrimPrefix(srv.URL, "http://")}

	before, err := p.GC(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		runtime.GC()
	}
	after, err := p.GC(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := after.Cycles - before.Cycles; got < 3 {
		t.Errorf("collections counted between the reads = %d, want at least the 3 forced", got)
	}
	if after.Pause < before.Pause {
		t.Errorf("pause total went down: %v -> %v", before.Pause, after.Pause)
	}
}

func TestGCRefusesAPageWithoutTheGoCollector(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.Handler
		want    string
	}{
		{"no go collector", promhttp.HandlerFor(prometheus.NewRegistry(), promhttp.HandlerOpts{}), "no go_gc_duration_seconds"},
		{"not found", http.NotFoundHandler(), "404"},
		{"not metrics", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("<html>{")) }), "/metrics"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			p := &Process{Name: "server", Admin: strings.TrimPrefix(srv.URL, "http://")}
			if _, err := p.GC(context.Background()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("GC error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := (&Process{Name: "floor"}).GC(context.Background()); err == nil {
		t.Error("GC of a process without an admin listener: no error")
	}
}
