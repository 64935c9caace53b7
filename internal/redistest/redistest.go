// Package redistest runs a redis-server of a test's own: the one copy the
// state package's tests (which cannot import testsupport: it imports
// wiring, which imports state) and testsupport.StartRedis share. It
// imports only the standard library.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a redis-server of a test's own, on a unix socket in the test's
// temporary directory and no TCP port at all (--port 0), its log appended
// and synced so that a server stopped and started again keeps what it was
// told.
type Server struct {
	bin, dir string
	args     []string // more redis-server arguments
	// Socket is the server's unix socket: state.redis.address.
	Socket string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start starts a redis-server for tb with extra arguments (such as
// "--requirepass", "x"), stopped when tb ends, or says why there is none
// (redis-server is not installed): the caller skips, saying so.
func Start(tb testing.TB, extra ...string) (*Server, error) {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server is not installed (Debian's redis-server), so this is not tested: %v", err)
	}
	dir := tb.TempDir()
	r := &Server{bin: bin, dir: dir, args: extra, Socket: filepath.Join(dir, "redis.sock")}
	if len(r.Socket) > 100 {
		tb.Fatalf("socket path %s is too long for a unix socket: shorten the test's name", r.Socket)
	}
	r.Start(tb)
	tb.Cleanup(func() { r.Stop(tb) })
	return r, nil
}

// Start starts the server (again), returning once it accepts connections.
func (r *Server) Start(tb testing.TB) {
	tb.Helper()
	args := append([]string{"--port", "0", "--unixsocket", r.Socket, "--unixsocketperm", "700", "--dir", r.dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no", "--logfile", ""}, r.args...)
	cmd := exec.Command(r.bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	dieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting redis-server: %v", err)
	}
	exited, ready := make(chan struct{}), make(chan struct{})
	var logMu sync.Mutex
	var log strings.Builder
	go func() {
		var once sync.Once
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			logMu.Lock()
			if log.Len() < 16<<10 {
				log.WriteString(sc.Text() + "\n")
			}
			logMu.Unlock()
			if strings.Contains(strings.ToLower(sc.Text()), "ready to accept connections") {
				once.Do(func() { close(ready) })
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	wait, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case <-ready:
	case <-exited:
		logMu.Lock()
		defer logMu.Unlock()
		tb.Fatalf("redis-server exited before it was ready:\n%s", log.String())
	case <-wait.Done():
		_ = cmd.Process.Kill()
		<-exited
		tb.Fatal("redis-server not ready within 10s")
	}
	r.mu.Lock()
	r.cmd, r.exited = cmd, exited
	r.mu.Unlock()
}

// Stop ends the server as an operator would (SIGTERM: it syncs and exits).
func (r *Server) Stop(tb testing.TB) {
	tb.Helper()
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	wait, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case <-exited:
	case <-wait.Done():
		_ = cmd.Process.Kill()
		<-exited
		tb.Error("redis-server did not stop within 10s of SIGTERM")
	}
}
