package main

// Replicas: `guestgate serve` as separate processes, for the tests of a
// fleet. The test binary is its own guestgate: started with
// GUESTGATE_TEST_AS_BINARY=1 it runs main's run with its arguments instead
// of the tests, so a replica is a real serve process of this build (its own
// listeners, metrics, caches and state client) without a second build.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/guestgate/guestgate/internal/testsupport"
)

const asBinaryEnv = "GUESTGATE_TEST_AS_BINARY"

func TestMain(m *testing.M) {
	if os.Getenv(asBinaryEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// replica is one running `guestgate serve` process.
type replica struct {
	t                 *testing.T
	name              string
	grpc, http, admin string // listener addresses, from its start line
	client            authv3.AuthorizationClient
	stdout, stderr    *lineBuffer
	idPrefix, nextID  int
}

// replicas names every replica started, so each has its own request ids.
var replicas struct{ names []string }

// startReplica runs `guestgate serve --config cfgPath` as a process of its
// own, ended (SIGTERM, then SIGKILL after a bound) when t ends, and returns
// it once /readyz says ready.
func startReplica(t *testing.T, name, cfgPath string) *replica {
	t.Helper()
	r := &replica{t: t, name: name, stdout: &lineBuffer{}, stderr: &lineBuffer{}, idPrefix: len(replicas.names)}
	replicas.names = append(replicas.names, name)
	cmd := exec.Command(os.Args[0], "serve", "--config", cfgPath)
	cmd.Env = append(os.Environ(), asBinaryEnv+"=1")
	cmd.Stdout, cmd.Stderr = r.stdout, r.stderr
	// The kernel ends the replica with the test binary, even on a panic.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("%s exited: %v\n%s", name, err, tail(r.stderr.String()))
			}
		case <-time.After(15 * time.Second): // a bound: a replica that never stops fails, not hangs
			_ = cmd.Process.Kill()
			t.Errorf("%s did not stop within 15s of SIGTERM", name)
		}
	})
	testsupport.EventuallyState(t, name+" serving", func() (bool, string) {
		select {
		case err := <-exited:
			t.Fatalf("%s exited before serving: %v\n%s", name, err, tail(r.stderr.String()))
		default:
		}
		for _, line := range strings.Split(r.stderr.String(), "\n") {
			var l struct{ Msg, GRPC, HTTP, Admin string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "guestgate serving" {
				r.grpc, r.http, r.admin = l.GRPC, l.HTTP, l.Admin
				return true, ""
			}
		}
		return false, "no start line yet"
	})
	waitReady(t, "http://"+r.admin+"/readyz")
	conn, err := grpc.NewClient(r.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r.client = authv3.NewAuthorizationClient(conn)
	return r
}

// tail is the end of a process's log, for a failure message.
func tail(s string) string {
	if len(s) > 4000 {
		return "..." + s[len(s)-4000:]
	}
	return s
}

// check asks the replica's gRPC Check about c and returns whether it
// allowed it and the reason: "allowed", or the denial body's reason.
func (r *replica) check(c httpCall) (bool, string) {
	r.t.Helper()
	ok, reason, _ := r.checkID(c)
	return ok, reason
}

func (r *replica) checkID(c httpCall) (bool, string, string) {
	r.t.Helper()
	r.nextID++
	// A plain hex id, as guestgate takes x-request-id (else it makes one).
	id := fmt.Sprintf("%x-%06x", r.idPrefix, r.nextID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := r.client.Check(ctx, checkRequestWithID(c, id))
	if err != nil {
		r.t.Fatalf("%s: %s %s: %v", r.name, c.method, c.path, err)
	}
	if resp.GetOkResponse() != nil {
		return true, "allowed", id
	}
	var body struct{ Reason string }
	_ = json.Unmarshal([]byte(resp.GetDeniedResponse().GetBody()), &body)
	return false, body.Reason, id
}

// decision is the replica's decision log line for request id, waited for:
// the line leaves the process before its answer, but reaches this one
// through a pipe.
func (r *replica) decision(t *testing.T, id string) decisionLine {
	t.Helper()
	var d decisionLine
	testsupport.EventuallyState(t, r.name+"'s decision line "+id, func() (bool, string) {
		var ok bool
		if d, ok = r.stdout.decision(id); ok {
			return true, ""
		}
		d, ok = r.stderr.decision(id)
		return ok, "not logged yet"
	})
	return d
}

// readyz is the replica's /readyz.
func (r *replica) readyz() readiness {
	r.t.Helper()
	var rd readiness
	body, err := httpGet("http://" + r.admin + "/readyz")
	if err != nil {
		r.t.Fatal(err)
	}
	if err := json.Unmarshal(body, &rd); err != nil {
		r.t.Fatalf("%s /readyz: %v in %s", r.name, err, body)
	}
	return rd
}
