package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Run starts a daemon and serves until SIGINT or SIGTERM (or a leave
// request), then shuts down gracefully within cfg.ShutdownTimeout. A second
// signal forces an immediate exit.
func Run(ctx context.Context, cfg Config, opts ...Option) error {
	d, err := New(cfg, opts...)
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := d.Start(ctx); err != nil {
		return err
	}
	select {
	case s := <-sigs:
		d.log.Info("stopping", "signal", s.String(), "timeout", cfg.ShutdownTimeout)
	case <-d.Left():
		d.log.Info("left the cluster; stopping")
	case <-ctx.Done():
	}
	go func() {
		if s, ok := <-sigs; ok {
			d.log.Warn("second signal: exiting now", "signal", s.String())
			os.Exit(1)
		}
	}()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	return d.Shutdown(sctx)
}

// NewLogger builds the daemon's slog logger.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("%w: log_level: %v", ErrConfig, err)
	}
	o := &slog.HandlerOptions{Level: lvl}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return slog.New(slog.NewTextHandler(w, o)), nil
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
}
