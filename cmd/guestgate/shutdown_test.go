package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/guestgate/guestgate/internal/testsupport"
)

// TestSIGTERMStopsWithinTheShutdownTimeout runs `guestgate serve` as the
// binary does, holds a gRPC health Watch stream open (a graceful stop
// waits for every stream, so without a bound it would never return), and
// sends the process SIGTERM: the watcher is told NOT_SERVING, the drain
// gives up at the configured shutdown timeout, and serve exits 0.
func TestSIGTERMStopsWithinTheShutdownTimeout(t *testing.T) {
	_, cfgPath := testsupport.CopyDevelopment(t, map[string]string{"admin: 127.0.0.1:0": "admin: 127.0.0.1:0\n  shutdown_timeout: 1s"})
	stderr := &lineBuffer{}
	exit := make(chan int, 1)
	go func() { exit <- run([]string{"serve", "--config", cfgPath}, nil, io.Discard, stderr) }()

	// The listeners are on port 0: their addresses are in the start line.
	var serving struct{ GRPC, Admin string }
	testsupport.EventuallyState(t, "guestgate serving", func() (bool, string) {
		for _, line := range strings.Split(stderr.String(), "\n") {
			var l struct{ Msg, GRPC, Admin string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "guestgate serving" {
				serving.GRPC, serving.Admin = l.GRPC, l.Admin
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
	waitReady(t, "http://"+serving.Admin+"/readyz")

	conn, err := grpc.NewClient(serving.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := watch.Recv(); err != nil || st.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before SIGTERM: %v %v", st, err)
	}

	// serveCmd has registered for SIGTERM before it listened, so the signal
	// reaches it, not the test process's default handler.
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if st, err := watch.Recv(); err != nil || st.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health after SIGTERM: %v %v, want NOT_SERVING", st, err)
	}
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("serve exited %d after SIGTERM: %s", code, stderr.String())
		}
	case <-time.After(15 * time.Second): // a bound: a serve that never stops fails, not hangs
		t.Fatal("serve did not stop within 15s of SIGTERM with a 1s shutdown timeout")
	}
	logs := stderr.String()
	for _, want := range []string{"shutting down: draining in-flight checks", "drain timed out", `"msg":"stopped"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the shutdown log has no %q", want)
		}
	}
}
