package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/ext_authz"
	"github.com/guestgate/guestgate/internal/logwriter"
	"github.com/guestgate/guestgate/metrics"
	"github.com/guestgate/guestgate/wiring"
)

func serveCmd(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (YAML); none: the development setup")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Every line goes through one bounded queue to stderr, so a check
	// never waits on the write(2) of its decision line; deferred first, the
	// queue is written out last, after the drain and the tracing.
	out := logwriter.New(stderr, logwriter.Options{})
	flushWithin := logFlushTimeout
	defer func() { flushLog(out, flushWithin) }()
	logger := slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	tuneGC(logger, cfg.Runtime.MemoryLimitMiB, memlimit.FromCgroup)
	flushWithin = cfg.Listen.ShutdownTimeout.D()
	if cfg.Development {
		warnDevelopment(out, logger)
	}
	// Bound before anything is built, so a taken address fails at once,
	// not after the policy compiled and the keys were fetched.
	ls, err := bind(cfg.Listen)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	tp, err := startTracing(ctx, cfg.Tracing, logger)
	if err != nil {
		return err
	}
	// Deferred, so it runs after serve's drain: the last checks' spans
	// are sent, within another shutdown timeout.
	defer stopTracing(tp, cfg.Listen.ShutdownTimeout.D(), logger)
	store, err := wiring.OpenState(cfg, wiring.StateOptions{})
	if err != nil {
		ls.close()
		return err
	}
	if store == nil {
		logger.Warn("no state store (state: in the config): every request that needs a channel's ownership is denied state_unavailable")
	} else {
		logger.Info("state store open", "store", cfg.State.String())
	}
	s, err := newSidecar(ctx, cfg, logger, sidecarOptions{Tracing: tp, Store: store, LogOutput: out})
	if err != nil {
		ls.close()
		if store != nil {
			store.Close()
		}
		return err
	}
	s.use(ls)
	return s.serve(ctx)
}

// logFlushTimeout bounds the writing of the queued log lines when serve
// returns before its config is loaded (then the shutdown timeout does).
const logFlushTimeout = 10 * time.Second

// flushLog writes the queued log lines, for at most timeout: a stuck
// stderr does not keep the process from exiting.
func flushLog(out *logwriter.Writer, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_ = out.Close(ctx) // where would a failure be said? stderr is what failed
}

// logOutputStats are out's counts, for the metrics.
func logOutputStats(out *logwriter.Writer) func() metrics.LogOutputStats {
	return func() metrics.LogOutputStats {
		st := out.Stats()
		return metrics.LogOutputStats{Dropped: st.Dropped, WriteErrors: st.WriteErrors}
	}
}

// startTracing builds the tracer provider cfg describes (nil when tracing
// is off), its export failures logged.
func startTracing(ctx context.Context, cfg config.Tracing, logger *slog.Logger) (*sdktrace.TracerProvider, error) {
	tp, err := ext_authz.NewTracerProvider(ctx, cfg, versionString())
	if err != nil || tp == nil {
		return nil, err
	}
	// The SDK reports a failed export here (a collector down, a
	// certificate refused); the spans are dropped, the checks go on.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("tracing: spans not exported", "error", err)
	}))
	logger.Info("tracing on", "exporter", cfg.String(), "sample_ratio", cfg.Ratio())
	return tp, nil
}

// stopTracing sends the spans still queued and stops the exporter, for at
// most timeout.
func stopTracing(tp *sdktrace.TracerProvider, timeout time.Duration, logger *slog.Logger) {
	if tp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		logger.Warn("tracing: the last spans were not sent", "error", err)
	}
}

// gcPercent is the garbage collector's target when GOGC is not set. The
// live heap is small (the compiled policy, the caches) and every check
// allocates a little (gRPC's request and response, the input), so at Go's
// default of 100 the collector runs very often; 200 halves that for a few
// MiB more peak RSS. make bench on 2 CPUs: CPU per check 37 -> 30 µs,
// throughput 0.77 -> 0.86 of the floor, peak RSS 45 -> 52 MiB.
const gcPercent = 200

// tuneGC sets the collector's target (gcPercent unless GOGC is set) and
// its soft memory limit, unless GOMEMLIMIT is set: runtime.memory_limit_mib
// (mib) when it gives one, else 90% of the container's memory limit, as
// limit (cgroups) reports it, unless mib is -1 or AUTOMEMLIMIT=off. The
// caches hold a few KiB per token and decision, so a busy sidecar's live
// heap grows with its visitors, and at GOGC=200 its heap with three times
// that: near the limit the collector runs more often instead of the
// container being killed. Without a limit it does nothing.
func tuneGC(logger *slog.Logger, mib int, limit memlimit.Provider) {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		return // the runtime has read it
	}
	switch {
	case mib > 0:
		debug.SetMemoryLimit(int64(mib) << 20)
		logger.Info("memory limit for the collector", "runtime.memory_limit_mib", mib)
	case mib == 0:
		if _, err := memlimit.Set(memlimit.WithProvider(limit), memlimit.WithLogger(logger)); err != nil {
			logger.Warn("no memory limit for the collector", "error", err)
		}
	}
}

// loadConfig reads the given file, or the development setup when none is
// given. The development setup is never a fallback for a config that fails.
// A config whose environment variables or files are not all here is
// refused with the list of every one that is not, so a newcomer trying the
// example learns at once what a deployment must provide.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Development()
	}
	cfg, err := config.Load(path)
	var missing *config.MissingError
	if !errors.As(config.CheckNeeds(path), &missing) {
		// All here (or the document does not decode: Load said why).
		return cfg, err
	}
	var fe *config.FieldError
	if err == nil || errors.As(err, &fe) && missing.Has(fe.Key) {
		return nil, missing
	}
	// Load failed for something else too: say both.
	return nil, errors.Join(err, missing)
}

func warnDevelopment(stderr io.Writer, logger *slog.Logger) {
	fmt.Fprint(stderr, `
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!!  guestgate is running the DEVELOPMENT SETUP: its keys and secrets are     !!
!!  public (testdata/dev), denials show precise reasons, loopback only.      !!
!!  Never use it in front of real traffic: pass --config FILE.               !!
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!

`)
	logger.Warn("development setup: committed development keys and secrets, loopback only; never for production")
}

func validateCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	configPath := fs.String("config", "", "config file (YAML); none: the development setup")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	// The tracing files (CA, client certificate) are read as serve reads
	// them; nothing is exported.
	tp, err := ext_authz.NewTracerProvider(context.Background(), cfg.Tracing, versionString())
	if err != nil {
		return err
	}
	if tp != nil {
		_ = tp.Shutdown(context.Background())
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The state store is not opened: a running guestgate holds it.
	s, err := newSidecar(context.Background(), cfg, logger, sidecarOptions{Offline: true})
	if err != nil {
		return err
	}
	defer s.verifier.Load().Close()
	fmt.Fprintf(stdout, "ok: config %s, policy %s revision %s, %d trusted issuers, state %s\n",
		orDev(cfg.Path), cfg.Policy.Dir, s.engine.Revision(), len(cfg.Tokens.Issuers), cfg.State)
	return nil
}

func orDev(p string) string {
	if p == "" {
		return "(development setup)"
	}
	return p
}
