package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// Process is a server under test, run as a child process.
type Process struct {
	Name  string
	Addr  string        // its gRPC address, from its "serving" log line
	Admin string        // its admin address (/metrics), "" if it has none
	Ready time.Duration // from start until gRPC health said SERVING
	Conn  *grpc.ClientConn

	cmd       *exec.Cmd
	decisions atomic.Int64 // decision log lines seen on stderr
	logBytes  atomic.Int64
	done      chan struct{}
	mu        sync.Mutex
	tail      []string        // the last lines of stderr, for errors
	loads     []time.Duration // policy load times the engine logged
}

// PolicyLoads are the policy load (read and compile) times the child
// logged so far, the first at start included.
func (p *Process) PolicyLoads() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Duration(nil), p.loads...)
}

// Start runs bin with args (and env added to this process's), waits for its log line naming its gRPC address
// ("grpc"), connects, and waits until gRPC health reports SERVING, for at
// most timeout. Its stderr is read to the end: the decision log is counted
// and dropped.
func Start(ctx context.Context, name, bin string, args, env []string, timeout time.Duration) (*Process, error) {
	p := &Process{Name: name, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	dieWithParent(p.cmd)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stdout = io.Discard
	start := time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	addrc := make(chan string, 1)
	go p.readLog(stderr, addrc)
	go func() { _ = p.cmd.Wait(); close(p.done) }()

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	select {
	case p.Addr = <-addrc:
	case <-p.done:
		return nil, fmt.Errorf("%s exited before serving: %s", name, p.Tail())
	case <-deadline.C:
		p.Stop()
		return nil, fmt.Errorf("%s: no serving log line within %s: %s", name, timeout, p.Tail())
	}
	p.Conn, err = grpc.NewClient(p.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		p.Stop()
		return nil, err
	}
	health := healthpb.NewHealthClient(p.Conn)
	for {
		hctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		resp, err := health.Check(hctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			p.Ready = time.Since(start)
			return p, nil
		}
		select {
		case <-deadline.C:
			p.Stop()
			return nil, fmt.Errorf("%s: not SERVING within %s", name, timeout)
		case <-ctx.Done():
			p.Stop()
			return nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// readLog reads the child's JSON log lines: the first naming "grpc" gives
// the address; decision lines ("msg":"decision") are counted.
func (p *Process) readLog(r io.Reader, addrc chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sent := false
	for sc.Scan() {
		line := sc.Bytes()
		p.logBytes.Add(int64(len(line) + 1))
		if bytes.Contains(line, []byte(`"msg":"decision"`)) {
			p.decisions.Add(1)
			continue
		}
		p.mu.Lock()
		p.tail = append(p.tail, string(line))
		if len(p.tail) > 20 {
			p.tail = p.tail[1:]
		}
		p.mu.Unlock()
		var m struct {
			Msg      string `json:"msg"`
			GRPC     string `json:"grpc"`
			Admin    string `json:"admin"`
			Duration int64  `json:"duration"` // the engine's, in nanoseconds
		}
		if json.Unmarshal(line, &m) != nil {
			continue
		}
		if !sent && m.GRPC != "" {
			p.Admin = m.Admin // written before the address is sent, read after
			addrc <- m.GRPC
			sent = true
		}
		if m.Msg == "policy loaded" && m.Duration > 0 {
			p.mu.Lock()
			p.loads = append(p.loads, time.Duration(m.Duration))
			p.mu.Unlock()
		}
	}
}

// Tail is the end of the child's operational log.
func (p *Process) Tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// Decisions is the number of decision log lines written so far.
func (p *Process) Decisions() int64 { return p.decisions.Load() }

// CPU is the CPU time (user and system) the child used so far.
func (p *Process) CPU() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields count from after it.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc/PID/stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc/PID/stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// PeakRSS is the child's peak resident set size (VmHWM) in bytes.
func (p *Process) PeakRSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	return parseVmHWM(b)
}

func parseVmHWM(status []byte) (int64, error) {
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, errors.New("no VmHWM in /proc/PID/status")
}

// Stop ends the child (SIGTERM, then SIGKILL after 5s) and waits for it.
func (p *Process) Stop() {
	if p.Conn != nil {
		p.Conn.Close()
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// GCStats are the child's garbage collections so far, from the Go
// collector's go_gc_duration_seconds on its admin /metrics: how many, and
// the stop-the-world pause time they took in all.
type GCStats struct {
	Cycles uint64
	Pause  time.Duration
}

// GC reads the child's GCStats.
func (p *Process) GC(ctx context.Context) (GCStats, error) {
	if p.Admin == "" {
		return GCStats{}, fmt.Errorf("%s has no admin listener", p.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Admin+"/metrics", nil)
	if err != nil {
		return GCStats{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return GCStats{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return GCStats{}, fmt.Errorf("%s /metrics: %s", p.Name, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return GCStats{}, fmt.Errorf("%s /metrics: %w", p.Name, err)
	}
	f, ok := families["go_gc_duration_seconds"]
	if !ok || len(f.GetMetric()) != 1 || f.GetMetric()[0].GetSummary() == nil {
		return GCStats{}, fmt.Errorf("%s /metrics: no go_gc_duration_seconds summary", p.Name)
	}
	sum := f.GetMetric()[0].GetSummary()
	return GCStats{Cycles: sum.GetSampleCount(), Pause: time.Duration(sum.GetSampleSum() * float64(time.Second))}, nil
}
