package store

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// badgerLogger routes Badger's logger to slog. Badger logs at info on every
// open, flush and compaction and at debug on every write, so info and debug
// go to slog's debug level; warnings and errors go to warn, because they
// concern local storage, not something the operator must act on at once
// unless they repeat. Formatting is skipped when the level is disabled,
// which matters on the write path.
type badgerLogger struct {
	log *slog.Logger
}

func newBadgerLogger(log *slog.Logger) *badgerLogger {
	return &badgerLogger{log: log.With("component", "badger")}
}

func (l *badgerLogger) Errorf(format string, args ...any) {
	l.emit(slog.LevelWarn, "error", format, args)
}

func (l *badgerLogger) Warningf(format string, args ...any) {
	l.emit(slog.LevelWarn, "warning", format, args)
}

func (l *badgerLogger) Infof(format string, args ...any) {
	l.emit(slog.LevelDebug, "info", format, args)
}

func (l *badgerLogger) Debugf(format string, args ...any) {
	l.emit(slog.LevelDebug, "debug", format, args)
}

// emit logs one Badger line; badgerLevel keeps Badger's own level visible.
func (l *badgerLogger) emit(level slog.Level, badgerLevel, format string, args []any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	l.log.Log(ctx, level, msg, "badger_level", badgerLevel)
}

// discardLogger is the logger used when Config.Logger is nil.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
