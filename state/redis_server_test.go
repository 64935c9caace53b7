package state

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a redis-server of the test's own, on a unix socket in the
// test's temporary directory and no TCP port at all (--port 0).
type redisServer struct {
	bin, dir, sock string
	args           []string
	prefixes       atomic.Int64

	cmd    *exec.Cmd
	exited chan struct{}
}

// launchRedis starts a redis-server for t, stopped when t ends, or says why
// there is none.
func launchRedis(t testing.TB, extra ...string) (*redisServer, error) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server is not installed, so the Redis backend is not tested: %v", err)
	}
	dir := t.TempDir()
	srv := &redisServer{bin: bin, dir: dir, sock: filepath.Join(dir, "redis.sock"), args: extra}
	if len(srv.sock) > 100 {
		t.Fatalf("socket path %s is too long for a unix socket: shorten the test's name", srv.sock)
	}
	srv.start(t)
	t.Cleanup(func() { srv.stop(t) })
	return srv, nil
}

// startRedis is launchRedis for a test of the Redis backend alone.
func startRedis(t *testing.T, extra ...string) *redisServer {
	t.Helper()
	srv, err := launchRedis(t, extra...)
	if err != nil {
		t.Skip(err)
	}
	return srv
}

func (r *redisServer) start(t testing.TB) {
	t.Helper()
	args := append([]string{
		"--port", "0", "--unixsocket", r.sock, "--unixsocketperm", "700", "--dir", r.dir,
		// Appended and synced: a server stopped and started again keeps
		// what it was told, as a production Redis would.
		"--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--daemonize", "no", "--logfile", "",
	}, r.args...)
	cmd := exec.Command(r.bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	dieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	r.cmd, r.exited = cmd, make(chan struct{})
	ready := make(chan struct{})
	var mu sync.Mutex
	var log strings.Builder
	go func() {
		var once sync.Once
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			mu.Lock()
			if log.Len() < 16<<10 {
				log.WriteString(sc.Text() + "\n")
			}
			mu.Unlock()
			if strings.Contains(strings.ToLower(sc.Text()), "ready to accept connections") {
				once.Do(func() { close(ready) })
			}
		}
		_ = cmd.Wait()
		close(r.exited)
	}()
	// Bounded: a real process must come up; it says so on its log, so the
	// wait ends on that line, not on a timer.
	wait, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case <-ready:
	case <-r.exited:
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("redis-server exited before it was ready:\n%s", log.String())
	case <-wait.Done():
		_ = cmd.Process.Kill()
		<-r.exited
		t.Fatal("redis-server not ready within 10s")
	}
}

// stop ends the server as an operator would (SIGTERM: it syncs and exits).
func (r *redisServer) stop(t testing.TB) {
	t.Helper()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	wait, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case <-r.exited:
	case <-wait.Done():
		_ = r.cmd.Process.Kill()
		<-r.exited
		t.Error("redis-server did not stop within 10s of SIGTERM")
	}
	r.cmd = nil
}

// client opens a Redis store on the server; every client gets its own key
// prefix unless opts names one.
func (r *redisServer) client(t testing.TB, opts Options, hooks redisHooks) *redisStore {
	t.Helper()
	opts.Backend = BackendRedis
	if opts.Timeout == 0 {
		opts.Timeout = testTimeout
	}
	if opts.Redis.Address == "" {
		opts.Redis.Address = r.sock
	}
	if opts.Redis.KeyPrefix == "" {
		opts.Redis.KeyPrefix = fmt.Sprintf("t%d:", r.prefixes.Add(1))
	}
	if err := opts.setDefaults(); err != nil {
		t.Fatal(err)
	}
	s, err := openRedis(opts, hooks)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// admin is a plain client for a test to look at or drive the server.
func (r *redisServer) admin(t *testing.T, password string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: r.sock, Password: password})
	t.Cleanup(func() { _ = c.Close() })
	return c
}
