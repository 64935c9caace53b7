package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
)

// TestServeTracesChecksAndSendsTheLastSpansOnShutdown runs `guestgate
// serve` with tracing on, to a collector in this process, sends one Check
// with a traceparent and then SIGTERM: the check's spans reach the
// collector by the time serve returns (the batch would otherwise wait its
// 5s), under the request's parent and the configured service name.
func TestServeTracesChecksAndSendsTheLastSpansOnShutdown(t *testing.T) {
	col, endpoint := testsupport.StartGRPCCollector(t)
	_, cfgPath := testsupport.CopyDevelopment(t, map[string]string{
		"development: true": "development: true\ntracing:\n  enabled: true\n  endpoint: " + endpoint + "\n  insecure: true\n  service_name: guestgate-e2e\n",
	})
	stderr := &lineBuffer{}
	exit := make(chan int, 1)
	go func() { exit <- run([]string{"serve", "--config", cfgPath}, nil, io.Discard, stderr) }()

	// The listeners are on port 0: their addresses are in the start line.
	var grpcAddr string
	testsupport.EventuallyState(t, "guestgate serving", func() (bool, string) {
		for _, line := range strings.Split(stderr.String(), "\n") {
			var l struct{ Msg, GRPC string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "guestgate serving" {
				grpcAddr = l.GRPC
				return true, ""
			}
		}
		select {
		case code := <-exit:
			t.Fatalf("serve exited %d: %s", code, stderr.String())
		default:
		}
		return false, "no start line yet"
	})
	if !strings.Contains(stderr.String(), `"msg":"tracing on"`) {
		t.Errorf("serve did not log that tracing is on: %s", stderr.String())
	}

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	cr := testsupport.CheckRequest("GET", "/conversations/GetTokenCommand", "", "")
	cr.Attributes.Request.Http.Headers["traceparent"] = "00-" + traceID + "-" + parentID + "-01"
	// A bound for a broken server, not a wait.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, cr)
	if err != nil || resp.GetDeniedResponse() == nil {
		t.Fatalf("Check without a token: %v %v, want a denial", err, resp)
	}

	// serveCmd has registered for SIGTERM before it listened, so the signal
	// reaches it, not the test process's default handler.
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("serve exited %d after SIGTERM: %s", code, stderr.String())
		}
	case <-ctx.Done():
		t.Fatal("serve did not stop after SIGTERM")
	}

	spans, resource, _ := col.Received()
	names := map[string]int{}
	wantTrace, _ := hex.DecodeString(traceID)
	wantParent, _ := hex.DecodeString(parentID)
	for _, s := range spans {
		names[s.GetName()]++
		if !bytes.Equal(s.GetTraceId(), wantTrace) {
			t.Errorf("%s in trace %x, want %s", s.GetName(), s.GetTraceId(), traceID)
		}
		if s.GetName() == "guestgate.check" && !bytes.Equal(s.GetParentSpanId(), wantParent) {
			t.Errorf("check span under %x, want the request's %s", s.GetParentSpanId(), parentID)
		}
	}
	for _, name := range []string{"guestgate.check", "guestgate.verify", "guestgate.evaluate", "guestgate.decision"} {
		if names[name] != 1 {
			t.Errorf("%d %s spans reached the collector, want 1 (all: %v)", names[name], name, names)
		}
	}
	service := ""
	for _, kv := range resource {
		if kv.GetKey() == "service.name" {
			service = kv.GetValue().GetStringValue()
		}
	}
	if service != "guestgate-e2e" {
		t.Errorf("service.name %q, want the configured guestgate-e2e", service)
	}
}

func TestChangingTracingNeedsARestart(t *testing.T) {
	half, one := 0.5, 1.0
	base := config.Tracing{Enabled: true, Protocol: config.TracingGRPC, Endpoint: "127.0.0.1:4317", SampleRatio: &one}
	cases := []struct {
		name    string
		edit    func(*config.Tracing)
		refused bool
	}{
		{"the same, read again", func(tr *config.Tracing) { v := 1.0; tr.SampleRatio = &v }, false},
		{"turned off", func(tr *config.Tracing) { tr.Enabled = false }, true},
		{"another endpoint", func(tr *config.Tracing) { tr.Endpoint = "127.0.0.1:4318" }, true},
		{"another ratio", func(tr *config.Tracing) { tr.SampleRatio = &half }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			next := base
			tc.edit(&next)
			err := needsRestart(&config.Config{Tracing: base}, &config.Config{Tracing: next})
			if tc.refused != (err != nil) || err != nil && !strings.Contains(err.Error(), "tracing") {
				t.Fatalf("needsRestart = %v, want refused %v naming tracing", err, tc.refused)
			}
		})
	}
}

func TestValidateReadsTheTracingFiles(t *testing.T) {
	dir, cfgPath := testsupport.CopyDevelopment(t, map[string]string{
		"development: true": "development: true\ntracing:\n  enabled: true\n  ca_file: collector-ca.pem\n",
	})
	var out, errOut bytes.Buffer
	if code := run([]string{"validate", "--config", cfgPath}, nil, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "tracing.ca_file") {
		t.Fatalf("validate with a missing CA file: exit %d: %s%s; want an error naming tracing.ca_file", code, out.String(), errOut.String())
	}
	if err := os.WriteFile(filepath.Join(dir, "dev", "collector-ca.pem"), []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if code := run([]string{"validate", "--config", cfgPath}, nil, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "tracing.ca_file") {
		t.Fatalf("validate with a CA file holding no certificate: exit %d: %s; want an error naming tracing.ca_file", code, errOut.String())
	}
}
