package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// DevConfig describes a local development cluster: several daemons in one
// process on loopback, each with its own temporary data dir.
type DevConfig struct {
	// Nodes is how many daemons to run (default 3).
	Nodes int
	// DataDir is where the CLI looks by default; node 1's api file is
	// written there so `ringkv put`/`get` reach the cluster at once.
	DataDir string
	// Zones spreads nodes over this many zones, round-robin (default 3).
	Zones int
	// Base is the config every node starts from (replication settings,
	// sync, limits); listen, api, data dir, bootstrap and zone are set per
	// node.
	Base Config
	// Log receives every node's log lines.
	Log io.Writer
}

// DevCluster is a running development cluster.
type DevCluster struct {
	Daemons []*Daemon
	root    string
	lock    *dirLock
	apiFile string
}

// StartDev starts the cluster: node 1 first, the others bootstrapping from
// it. It takes the lock of cfg.DataDir, so a real daemon and a dev cluster
// cannot both claim it.
func StartDev(ctx context.Context, cfg DevConfig) (_ *DevCluster, err error) {
	if cfg.Nodes < 1 || cfg.Nodes > 64 {
		return nil, fmt.Errorf("%w: nodes: %d is out of range; use 1 to 64", ErrConfig, cfg.Nodes)
	}
	if cfg.Zones < 1 {
		cfg.Zones = 1
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, dataDirErr(cfg.DataDir, err)
	}
	dc := &DevCluster{}
	defer func() {
		if err != nil {
			dc.Close(context.Background())
		}
	}()
	if dc.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if dc.root, err = os.MkdirTemp("", "ringkv-dev-"); err != nil {
		return nil, fmt.Errorf("daemon: dev: temp dir: %w", err)
	}
	var seed []string
	for i := 1; i <= cfg.Nodes; i++ {
		nc := cfg.Base
		nc.DataDir = filepath.Join(dc.root, fmt.Sprintf("node%d", i))
		nc.Listen = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
		nc.API = "127.0.0.1:0"
		nc.Bootstrap = seed
		nc.Timing = "local"
		if cfg.Zones > 1 {
			nc.Zone = fmt.Sprintf("zone%d", (i-1)%cfg.Zones+1)
		}
		logger, err := NewLogger(cfg.Log, nc.LogLevel, nc.LogFormat)
		if err != nil {
			return nil, err
		}
		d, err := New(nc, WithLogger(logger.With("node", i)))
		if err != nil {
			return nil, err
		}
		if err := d.Start(ctx); err != nil {
			return nil, fmt.Errorf("daemon: dev node %d: %w", i, err)
		}
		dc.Daemons = append(dc.Daemons, d)
		if i == 1 {
			seed = loopbackTCP(d.Addrs())
		}
	}
	dc.apiFile = filepath.Join(cfg.DataDir, APIFile)
	if err := writeFileAtomic(dc.apiFile, []byte(dc.Daemons[0].APIAddr()+"\n"), 0o644); err != nil {
		return nil, dataDirErr(cfg.DataDir, err)
	}
	return dc, nil
}

// loopbackTCP keeps the 127.0.0.1 TCP addresses (the dev cluster's seeds).
func loopbackTCP(addrs []string) []string {
	var out []string
	for _, a := range addrs {
		if strings.HasPrefix(a, "/ip4/127.0.0.1/tcp/") {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return addrs
	}
	return out
}

// WaitReady waits until every node reports ready.
func (dc *DevCluster) WaitReady(ctx context.Context) error {
	for {
		waiting := ""
		for i, d := range dc.Daemons {
			if r := d.notReady(); r != "" {
				waiting = fmt.Sprintf("node %d: %s", i+1, r)
				break
			}
		}
		if waiting == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("daemon: dev cluster not ready (%s): %w", waiting, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops every node (last started first), removes the temporary data
// dirs and the api file, and releases the lock.
func (dc *DevCluster) Close(ctx context.Context) error {
	var errs []error
	for i := len(dc.Daemons) - 1; i >= 0; i-- {
		if err := dc.Daemons[i].Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if dc.apiFile != "" {
		os.Remove(dc.apiFile)
	}
	if dc.root != "" {
		os.RemoveAll(dc.root)
	}
	errs = append(errs, dc.lock.release())
	return errors.Join(errs...)
}

// RunDev runs a dev cluster until SIGINT/SIGTERM; ready is called once
// every node is ready.
func RunDev(ctx context.Context, cfg DevConfig, ready func(*DevCluster)) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	dc, err := StartDev(ctx, cfg)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = dc.WaitReady(wctx)
	cancel()
	if err == nil && ready != nil {
		ready(dc)
	}
	if err == nil {
		select {
		case <-sigs:
		case <-ctx.Done():
		}
	}
	go func() {
		if _, ok := <-sigs; ok {
			os.Exit(1)
		}
	}()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Base.ShutdownTimeout)
	defer cancel()
	return errors.Join(err, dc.Close(sctx))
}
