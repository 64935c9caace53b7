package load

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func TestPercentileIsTheNearestRank(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, .5, 0},
		{"one", ms(7), .99, 7 * time.Millisecond},
		{"median of four is the second", ms(1, 2, 3, 4), .5, 2 * time.Millisecond},
		{"p50 of 1..100", ms(hundred...), .5, 50 * time.Millisecond},
		{"p95 of 1..100", ms(hundred...), .95, 95 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), .99, 99 * time.Millisecond},
		{"p100 is the maximum", ms(hundred...), 1, 100 * time.Millisecond},
		{"p99 of ten is the maximum", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), .99, 10 * time.Millisecond},
		{"a tiny p is the minimum", ms(3, 5), 0.0001, 3 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.sorted, tc.p); got != tc.want {
				t.Fatalf("Percentile(%v, %v) = %v, want %v", tc.sorted, tc.p, got, tc.want)
			}
		})
	}
}

func TestTableAlignsColumnsAndNamesEachGroupOnce(t *testing.T) {
	tb := &Table{Title: "title"}
	tb.Add(Row{Group: "g1", Name: "a", Value: "1", Target: "≤ 2", Verdict: Verdict(true)})
	tb.Add(Row{Group: "g1", Name: "longer name", Value: "22"})
	tb.Add(Row{Group: "group two", Name: "b", Value: "µs", Target: "0", Verdict: Verdict(false)})
	var b strings.Builder
	if err := tb.Write(&b); err != nil {
		t.Fatal(err)
	}
	want := "title\n" +
		"section    figure       value  target\n" +
		strings.Repeat("-", 45) + "\n" +
		"g1         a            1      ≤ 2     ok\n" +
		"           longer name  22\n" +
		"\n" +
		"group two  b            µs     0       MISSED\n"
	if got := b.String(); got != want {
		t.Fatalf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestMicrosSwitchesToMillisecondsFromOneMillisecond(t *testing.T) {
	for d, want := range map[time.Duration]string{
		18250 * time.Nanosecond:  "18.2 µs",
		999 * time.Microsecond:   "999.0 µs",
		time.Millisecond:         "1.00 ms",
		12345 * time.Microsecond: "12.35 ms",
	} {
		if got := Micros(d); got != want {
			t.Errorf("Micros(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestParseGoBenchReadsEveryPackagesLines(t *testing.T) {
	out := `goos: linux
pkg: github.com/guestgate/guestgate/ext_authz
BenchmarkCheckShippedPolicy/xbs_kite_command/hit-2   	   10000	    106795 ns/op	   46444 B/op	    1036 allocs/op
PASS
pkg: github.com/guestgate/guestgate/tokens
BenchmarkVerify/xbs_RS256/hit-2          	 1359230	       886.0 ns/op	    1184 B/op	       2 allocs/op
BenchmarkStrictParse-2                   	   84878	     14419 ns/op	  71.23 MB/s	   10080 B/op	     272 allocs/op
BenchmarkNoMem	 100	 5 ns/op
ok  	github.com/guestgate/guestgate/tokens	14.402s
`
	got, err := ParseGoBench(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []GoBench{
		{"github.com/guestgate/guestgate/ext_authz", "CheckShippedPolicy/xbs_kite_command/hit", 106795, 46444, 1036},
		{"github.com/guestgate/guestgate/tokens", "Verify/xbs_RS256/hit", 886, 1184, 2},
		{"github.com/guestgate/guestgate/tokens", "StrictParse", 14419, 10080, 272},
		{"github.com/guestgate/guestgate/tokens", "NoMem", 5, 0, 0},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d benchmarks %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("benchmark %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestParseVmHWMReadsKilobytes(t *testing.T) {
	got, err := parseVmHWM([]byte("Name:\tguestgate\nVmPeak:\t 1000 kB\nVmHWM:\t   43416 kB\nVmRSS:\t 40000 kB\n"))
	if err != nil || got != 43416<<10 {
		t.Fatalf("parseVmHWM = %d, %v; want %d", got, err, 43416<<10)
	}
	if _, err := parseVmHWM([]byte("Name:\tx\n")); err == nil {
		t.Fatal("parseVmHWM without VmHWM: no error")
	}
}

// denyOdd answers OK to requests whose path is "/ok" and denies the rest.
type denyOdd struct {
	authv3.UnimplementedAuthorizationServer
}

func (denyOdd) Check(_ context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if r.GetAttributes().GetRequest().GetHttp().GetPath() == "/ok" {
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(code.Code_OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}, nil
	}
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED)}}, nil
}

func TestRunCountsAnswersAndWrongAnswers(t *testing.T) {
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, denyOdd{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	wantOK := func(resp *authv3.CheckResponse) error {
		if resp.GetOkResponse() == nil {
			return errors.New("denied")
		}
		return nil
	}
	req := func(path string) *authv3.CheckRequest {
		return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Path: path}}}}
	}
	// The run ends on a count of requests, not after a while: how many a
	// loaded machine answers in a given time is no part of what is tested.
	// Duration is only a bound. Once the count is reached the run is
	// cancelled; requests then in flight (one per other stream at most)
	// go uncounted, and no stream counts one after another it dropped.
	const sends, streams = 40, 4
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sent atomic.Int64
	res := Run(ctx, conn, Options{Streams: streams, Duration: time.Minute, Next: func(w, i int) Request {
		if sent.Add(1) > sends {
			cancel()
		}
		if i%2 == 0 {
			return Request{Check: req("/ok"), Verify: wantOK}
		}
		return Request{Check: req("/no"), Verify: wantOK}
	}})
	if res.Requests < sends-(streams-1) || res.Requests > sends || res.Errors != 0 {
		t.Fatalf("Run = %d requests, %d errors (%s); want some and none", res.Requests, res.Errors, res.FirstError)
	}
	// Each stream alternates, so about half the answers are wrong.
	if res.Wrong < res.Requests/2-4 || res.Wrong > res.Requests/2+4 || res.FirstWrong != "denied" {
		t.Fatalf("Run = %d wrong of %d (%q), want about half", res.Wrong, res.Requests, res.FirstWrong)
	}
	if !isSorted(res.Latencies) || res.RPS() <= 0 {
		t.Fatalf("latencies not sorted or no rate: %v", res.RPS())
	}
}

func TestRunEndsEachStreamAfterPerStreamRequests(t *testing.T) {
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, denyOdd{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	const perStream, streams = 7, 3
	var mu sync.Mutex
	seen := map[[2]int]int{}
	res := Run(context.Background(), conn, Options{Streams: streams, Duration: time.Minute, PerStream: perStream, Next: func(w, i int) Request {
		mu.Lock()
		seen[[2]int{w, i}]++
		mu.Unlock()
		return Request{Check: &authv3.CheckRequest{}}
	}})
	if res.Requests != perStream*streams || res.Errors != 0 {
		t.Fatalf("Run = %d requests, %d errors (%s); want %d and none", res.Requests, res.Errors, res.FirstError, perStream*streams)
	}
	for w := range streams {
		for i := range perStream {
			if seen[[2]int{w, i}] != 1 {
				t.Fatalf("worker %d's request %d asked for %d times, want once", w, i, seen[[2]int{w, i}])
			}
		}
	}
	if len(seen) != perStream*streams {
		t.Fatalf("%d requests asked for, want %d", len(seen), perStream*streams)
	}
}

func isSorted(d []time.Duration) bool {
	for i := 1; i < len(d); i++ {
		if d[i] < d[i-1] {
			return false
		}
	}
	return true
}
