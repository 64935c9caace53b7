package main

// The outside load generator: ghz (pinned in go.mod as a tool) sends the
// same mix as the in-repo generator, guestgate and the floor in turn.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/guestgate/guestgate/bench/load"
)

// ghzPkg is the tool go.mod pins; make bench builds it with the servers.
const ghzPkg = "github.com/bojand/ghz/cmd/ghz"

// ghzRequests is how many requests of the mix ghz sends in turn (it
// round-robins over a JSON array).
const ghzRequests = 4096

// ghzReport is the part of ghz's JSON report the table reads.
type ghzReport struct {
	Count     uint64         `json:"count"`
	Rps       float64        `json:"rps"`
	ErrorDist map[string]int `json:"errorDistribution"`
	Latencies []struct {
		Percentage int           `json:"percentage"`
		Latency    time.Duration `json:"latency"`
	} `json:"latencyDistribution"`
	cpu time.Duration // ghz's own CPU time (user + system)
}

func (r ghzReport) percentile(p int) time.Duration {
	for _, l := range r.Latencies {
		if l.Percentage == p {
			return l.Latency
		}
	}
	return 0
}

// closedAtEnd says whether ghz's error message is one of a call it ended
// itself: when its duration is up it closes its connection, and the calls
// then in flight end Canceled, or Unavailable with "transport is closing".
func closedAtEnd(msg string) bool {
	return strings.Contains(msg, "code = Canceled") ||
		(strings.Contains(msg, "code = Unavailable") && strings.Contains(msg, "is closing"))
}

// errors counts the calls that failed, leaving out those ghz ended at its
// close (returned apart), and names one.
func (r ghzReport) errors() (n, atClose int, first string) {
	for e, c := range r.ErrorDist {
		if closedAtEnd(e) {
			atClose += c
			continue
		}
		n += c
		first = max(first, e) // the same one from run to run
	}
	return n, atClose, first
}

// ghzSetup writes the protoset of the Authorization service and the mix as
// a JSON array of CheckRequests, and returns their paths.
func ghzSetup(dir string, next func(w, i int) load.Request, streams int) (protoset, data string, err error) {
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	add(authv3.File_envoy_service_auth_v3_external_auth_proto)
	b, err := proto.Marshal(set)
	if err != nil {
		return "", "", err
	}
	protoset = filepath.Join(dir, "auth.protoset")
	if err := os.WriteFile(protoset, b, 0o644); err != nil {
		return "", "", err
	}
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i := range ghzRequests {
		if i > 0 {
			buf.WriteByte(',')
		}
		j, err := protojson.Marshal(next(i%streams, i/streams).Check)
		if err != nil {
			return "", "", err
		}
		buf.Write(j)
	}
	buf.WriteByte(']')
	data = filepath.Join(dir, "ghz-data.json")
	return protoset, data, os.WriteFile(data, buf.Bytes(), 0o644)
}

// ghzRun runs ghz against p for o.duration with o.streams workers on one
// connection and parses its report.
func ghzRun(ctx context.Context, o options, bin, protoset, data string, p *load.Process) (ghzReport, error) {
	args := []string{"--insecure", "--protoset", protoset, "--call", "envoy.service.auth.v3.Authorization/Check",
		"--data-file", data, "--disable-template-functions", "--disable-template-data",
		"--connections", "1", "--concurrency", fmt.Sprint(o.streams), "--duration", o.duration.String(),
		"--format", "json", p.Addr}
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return ghzReport{}, fmt.Errorf("ghz: %w: %s", err, strings.TrimSpace(errb.String()))
	}
	var r ghzReport
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return ghzReport{}, fmt.Errorf("ghz report: %w", err)
	}
	r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return r, nil
}

type ghzResult struct {
	gg, floor       []ghzReport
	ggCPU, floorCPU time.Duration
}

// ghzLoad drives gg and floor with ghz in turn, pairs times each.
func ghzLoad(ctx context.Context, o options, bin, protoset, data string, gg, floor *load.Process) (*ghzResult, error) {
	r := &ghzResult{}
	for i := range o.ghzPairs {
		for _, p := range []*load.Process{gg, floor} {
			progress("ghz run %d/%d: %s, %d streams, %s", i+1, o.ghzPairs, p.Name, o.streams, o.duration)
			cpu0, err := p.CPU()
			if err != nil {
				return nil, err
			}
			rep, err := ghzRun(ctx, o, bin, protoset, data, p)
			if err != nil {
				return nil, err
			}
			cpu1, err := p.CPU()
			if err != nil {
				return nil, err
			}
			if p == gg {
				r.gg, r.ggCPU = append(r.gg, rep), r.ggCPU+cpu1-cpu0
			} else {
				r.floor, r.floorCPU = append(r.floor, rep), r.floorCPU+cpu1-cpu0
			}
		}
	}
	return r, nil
}

// ghzRows reports the ghz runs as the in-repo generator's are reported.
func ghzRows(t *load.Table, r *ghzResult) {
	if r == nil || len(r.gg) == 0 {
		return
	}
	const g = "loopback load, ghz (outside generator)"
	var perRun []string
	var ratios []float64
	var ggN, floorN uint64
	var genCPU time.Duration
	errs, atClose, firstErr := 0, 0, ""
	for i := range r.gg {
		perRun = append(perRun, fmt.Sprintf("%.0f/%.0f", r.gg[i].Rps, r.floor[i].Rps))
		ratios = append(ratios, r.gg[i].Rps/r.floor[i].Rps)
		ggN += r.gg[i].Count
		floorN += r.floor[i].Count
		n, c, e := r.gg[i].errors()
		errs, atClose = errs+n, atClose+c
		if firstErr == "" {
			firstErr = e
		}
		genCPU += r.gg[i].cpu + r.floor[i].cpu
	}
	ratio := median(ratios)
	t.Add(load.Row{Group: g, Name: "runs guestgate/floor (A B A B)", Value: strings.Join(perRun, " ")})
	t.Add(load.Row{Group: g, Name: "throughput ratio guestgate/floor (median pair)", Value: fmt.Sprintf("%.2f", ratio),
		Target: "≥ 0.85", Verdict: load.Verdict(ratio >= 0.85)})
	// ghz reports percentiles per run; the worst run's are shown.
	worst := func(rs []ghzReport, p int) time.Duration {
		var w time.Duration
		for _, x := range rs {
			w = max(w, x.percentile(p))
		}
		return w
	}
	gp99, fp99 := worst(r.gg, 99), worst(r.floor, 99)
	t.Add(load.Row{Group: g, Name: "guestgate latency p50/p95/p99 (worst run)",
		Value:  fmt.Sprintf("%s / %s / %s", load.Micros(worst(r.gg, 50)), load.Micros(worst(r.gg, 95)), load.Micros(gp99)),
		Target: "p99 ≤ floor's + 0.5 ms", Verdict: load.Verdict(gp99 <= fp99+500*time.Microsecond)})
	t.Add(load.Row{Group: g, Name: "floor latency p50/p95/p99 (worst run)",
		Value: fmt.Sprintf("%s / %s / %s", load.Micros(worst(r.floor, 50)), load.Micros(worst(r.floor, 95)), load.Micros(fp99))})
	row := load.Row{Group: g, Name: "guestgate gRPC errors", Value: fmt.Sprintf("%d of %d", errs, ggN),
		Target: "0", Verdict: load.Verdict(errs == 0)}
	if firstErr != "" {
		row.Value += " (" + firstErr + ")"
	}
	t.Add(row)
	t.Add(load.Row{Group: g, Name: "  calls in flight when ghz closed (not errors)", Value: fmt.Sprint(atClose)})
	t.Add(load.Row{Group: g, Name: "guestgate / floor CPU per check", Value: fmt.Sprintf("%s / %s",
		load.Micros(r.ggCPU/time.Duration(max(ggN, 1))), load.Micros(r.floorCPU/time.Duration(max(floorN, 1))))})
	// Why its figures differ from the in-repo generator's: on two cores the
	// generator and the server share the CPU, and ghz spends this much of
	// it per call.
	t.Add(load.Row{Group: g, Name: "ghz's own CPU per call", Value: load.Micros(genCPU / time.Duration(max(ggN+floorN, 1)))})
}
