package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/guestgate/guestgate/config"
)

func serveCmd(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (YAML); none: the development setup")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	if cfg.Development {
		warnDevelopment(stderr, logger)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s, err := newSidecar(ctx, cfg, logger)
	if err != nil {
		return err
	}
	if err := s.listen(); err != nil {
		return err
	}
	return s.serve(ctx)
}

// loadConfig reads the given file, or the development setup when none is
// given. The development setup is never a fallback for a config that fails.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Development()
	}
	return config.Load(path)
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
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := newSidecar(context.Background(), cfg, logger)
	if err != nil {
		return err
	}
	defer s.verifier.Load().Close()
	fmt.Fprintf(stdout, "ok: config %s, policy %s revision %s, %d trusted issuers\n",
		orDev(cfg.Path), cfg.Policy.Dir, s.engine.Revision(), len(cfg.Tokens.Issuers))
	return nil
}

func orDev(p string) string {
	if p == "" {
		return "(development setup)"
	}
	return p
}
