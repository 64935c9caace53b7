package engine

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/open-policy-agent/opa/v1/logging"
)

// OPALogger is l as the logger OPA's packages take (its REST client and
// bundle downloader log through it), so that their lines are guestgate's
// structured lines too.
func OPALogger(l *slog.Logger) logging.Logger { return &opaLogger{l: l} }

type opaLogger struct {
	l *slog.Logger
}

func (o *opaLogger) log(level slog.Level, format string, a []any) {
	if o.l.Enabled(context.Background(), level) {
		o.l.Log(context.Background(), level, fmt.Sprintf(format, a...))
	}
}

func (o *opaLogger) Debug(format string, a ...any) { o.log(slog.LevelDebug, format, a) }
func (o *opaLogger) Info(format string, a ...any)  { o.log(slog.LevelInfo, format, a) }
func (o *opaLogger) Warn(format string, a ...any)  { o.log(slog.LevelWarn, format, a) }
func (o *opaLogger) Error(format string, a ...any) { o.log(slog.LevelError, format, a) }

func (o *opaLogger) WithFields(fields map[string]any) logging.Logger {
	args := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		args = append(args, k, v)
	}
	return &opaLogger{l: o.l.With(args...)}
}

// GetLevel reports the most verbose level l logs, so that OPA skips
// building lines nobody reads.
func (o *opaLogger) GetLevel() logging.Level {
	ctx := context.Background()
	switch {
	case o.l.Enabled(ctx, slog.LevelDebug):
		return logging.Debug
	case o.l.Enabled(ctx, slog.LevelInfo):
		return logging.Info
	case o.l.Enabled(ctx, slog.LevelWarn):
		return logging.Warn
	}
	return logging.Error
}

// SetLevel does nothing: the level is the slog handler's.
func (o *opaLogger) SetLevel(logging.Level) {}
