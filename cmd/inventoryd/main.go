// Command inventoryd serves the inventory ledger over HTTP.
//
// It only wires the pieces: flags and environment → Config → Validate →
// open the data directory → replay every shard's WAL → serve. Every flag
// also reads an INVENTORY_* environment variable (flags win).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/inventory-ledger/inventory/httpapi"
	"github.com/inventory-ledger/inventory/shard"
	"github.com/inventory-ledger/inventory/wal"
)

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "inventoryd:", err)
			os.Exit(1)
		}
	}
}

// Config is everything inventoryd can be told.
type Config struct {
	Addr      string
	AdminAddr string
	DataDir   string
	LogFormat string
	LogLevel  string
	Engine    shard.Config
	WAL       wal.Options

	// HTTP server timeouts: they bound slow or idle clients.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	ShutdownTimeout   time.Duration
	// MaxHeaderBytes bounds the request line and headers.
	MaxHeaderBytes int
	// InflightBodyBytes bounds the request bodies held at once (httpapi.Config.BodyBytesInflightMax).
	InflightBodyBytes int64
}

// parse reads flags, then INVENTORY_* variables for the flags not given.
func parse(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("inventoryd", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "address the HTTP API listens on")
	fs.StringVar(&c.AdminAddr, "admin-addr", "", "address for pprof (/debug/pprof/); empty: off")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "directory of the manifest and the shards' WALs")
	fs.IntVar(&c.Engine.Shards, "shards", shard.ShardsDefault, "shards (fixed when the data directory is created)")
	fs.DurationVar(&c.Engine.Retention, "retention", shard.RetentionDefault, "how long idempotency keys are remembered (at least)")
	fs.IntVar(&c.Engine.InboxDepth, "queue-depth", shard.InboxDepthDefault, "requests a shard queues (those waiting for a parked product too) before it answers 503 overloaded")
	fs.IntVar(&c.Engine.BatchOpsMax, "batch-ops-max", shard.BatchOpsMaxDefault, "ops a shard writes with one fsync at most (>= 1000)")
	fs.IntVar(&c.WAL.SegmentBytes, "segment-bytes", 4<<20, "WAL segment file size (each shard keeps its tail segment in memory)")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", 5*time.Second, "time to read a request's headers")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", 30*time.Second, "time to read a whole request")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", 30*time.Second, "time to write a response")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 2*time.Minute, "time an idle keep-alive connection stays open")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 8*time.Second, "time to finish requests in flight on SIGTERM")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", 64<<10, "largest request line and headers")
	fs.Int64Var(&c.InflightBodyBytes, "inflight-body-bytes", httpapi.BodyBytesInflightDefault, "bytes of request bodies all requests together may hold while they are read (>= 4194304, one batch); past it: 503 overloaded")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: inventoryd [flags]\n\nServes the inventory ledger HTTP API. Every flag can also be set by an\nenvironment variable: --data-dir is INVENTORY_DATA_DIR, and so on.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := "INVENTORY_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" && !given[f.Name] {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	return c, errors.Join(errs...)
}

// Validate checks the settings and the relations between them.
func (c *Config) Validate() error {
	var errs []error
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log format must be text or json, got %q", c.LogFormat))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		errs = append(errs, fmt.Errorf("log level: %w", err))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir must not be empty"))
	}
	for name, d := range map[string]time.Duration{"read header": c.ReadHeaderTimeout, "read": c.ReadTimeout,
		"write": c.WriteTimeout, "idle": c.IdleTimeout, "shutdown": c.ShutdownTimeout} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s timeout must be positive", name))
		}
	}
	if c.ShutdownTimeout > 9*time.Second {
		errs = append(errs, errors.New("shutdown timeout must leave time to close the logs within 10s (at most 9s)"))
	}
	if c.MaxHeaderBytes < 4<<10 {
		errs = append(errs, errors.New("max header bytes must be at least 4096"))
	}
	if c.InflightBodyBytes < httpapi.BodyBytesInflightMin {
		errs = append(errs, fmt.Errorf("inflight body bytes must be at least %d, one whole batch", httpapi.BodyBytesInflightMin))
	}
	c.Engine.BlockBytesMax = 4 << 20
	c.WAL.BlockBytesMax = c.Engine.BlockBytesMax
	if err := c.WAL.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Engine.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func newLogger(c *Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func run(args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parse(args, getenv, stderr)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := newLogger(&cfg, stderr)
	cfg.Engine.Logger = log
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Engine.Registerer = reg

	if err := shard.PrepareDir(cfg.DataDir, cfg.Engine.Shards); err != nil {
		return err
	}
	repairs := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "inventory_wal_repairs_total",
		Help: "Torn WAL tails cut back to the last whole record at start-up.",
	})
	reg.MustRegister(repairs)
	open := func(i int, replay func(uint64, []byte) error) (shard.Journal, error) {
		l, rep, err := wal.Open(shard.ShardDir(cfg.DataDir, i), cfg.WAL, replay)
		if err != nil {
			return nil, err
		}
		if rep.Repaired {
			repairs.Inc()
			log.Warn("wal tail repaired", "shard", i, "segment", rep.RepairSegment, "offset", rep.RepairOffset,
				"cut_bytes", rep.RepairCutBytes, "reason", rep.RepairReason)
		}
		return l, nil
	}
	engine, err := shard.Open(cfg.Engine, open)
	if err != nil {
		return err
	}
	handler, err := httpapi.New(httpapi.Config{Engine: engine, Registry: reg, Logger: log, BodyBytesInflightMax: cfg.InflightBodyBytes})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("starting", "addr", ln.Addr().String(), "data_dir", cfg.DataDir, "shards", cfg.Engine.Shards,
		"retention", cfg.Engine.Retention.String())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if cfg.AdminAddr != "" {
		go serveAdmin(cfg.AdminAddr, log)
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	replayed := make(chan error, 1)
	go func() { replayed <- engine.Wait(context.Background()) }()
	for {
		select {
		case err := <-replayed:
			if err != nil {
				srv.Close()
				return err
			}
			replayed = nil
		case err := <-served:
			engine.Close(context.Background())
			return fmt.Errorf("serve: %w", err)
		case sig := <-stop:
			log.Info("shutting down", "signal", sig.String())
			ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				log.Warn("requests still in flight at the shutdown deadline", "err", err)
			}
			if err := engine.Close(ctx); err != nil {
				log.Warn("close engine", "err", err)
			}
			log.Info("stopped")
			return nil
		}
	}
}

// serveAdmin serves pprof on its own address, off by default: profiles
// expose internals and cost CPU, so they stay off the public listener.
func serveAdmin(addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("admin listening", "addr", addr)
	if err := srv.ListenAndServe(); err != nil {
		log.Error("admin server", "err", err)
	}
}
