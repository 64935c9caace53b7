package testsupport

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// Scrape reads a Prometheus exposition (a /metrics URL) as Prometheus
// would, failing tb unless it answers 200.
func Scrape(tb testing.TB, url string) string {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		tb.Fatalf("%s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// Metric is the value of one sample in an exposition, labels written as
// Prometheus writes them (sorted by name), or 0 when it is absent.
func Metric(tb testing.TB, exposition, sample string) float64 {
	tb.Helper()
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return 0
}
