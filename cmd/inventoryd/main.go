// Command inventoryd serves the inventory ledger over HTTP.
//
// It only wires the pieces: flags and environment → Config → Validate →
// open the data directory → replay every shard's WAL → serve. Every flag
// also reads an INVENTORY_* environment variable (flags win).
package main

import (
	"context"
	"crypto/tls"
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
	"strconv"
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
	args := os.Args[1:]
	var err error
	switch {
	case len(args) > 0 && args[0] == "add-key":
		err = addKey(args[1:], os.Getenv, os.Stdout, os.Stderr)
	case len(args) > 0 && args[0] == "remove-key":
		err = removeKey(args[1:], os.Getenv, os.Stderr)
	default:
		err = run(args, os.Getenv, os.Stderr)
	}
	if err != nil {
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
	// ArchiveDir, if not empty, receives each shard's old sealed log
	// segments after a snapshot (DIR/shard-NNNN); the log reads them there.
	ArchiveDir string
	LogFormat  string
	LogLevel   string
	Engine     shard.Config
	WAL        wal.Options

	// HTTP server timeouts: they bound slow or idle clients.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	ShutdownTimeout   time.Duration
	// MaxHeaderBytes bounds the request line and headers.
	MaxHeaderBytes int
	// InflightBodyBytes bounds the request bodies held at once
	// (httpapi.Config.BodyBytesInflightMax).
	InflightBodyBytes int64
	// MaxConns bounds the API's open connections; unset, it is derived
	// from the descriptor limit (see descriptorBudget).
	MaxConns autoInt
	// ReconcileInterval runs a reconciliation that often; 0: off.
	ReconcileInterval time.Duration
	// KeysFile turns access control on (see httpapi.Auth); reloaded on
	// SIGHUP. Empty: protected mode, loopback addresses only.
	KeysFile string
	// Insecure allows listening beyond loopback without access control
	// (and pprof beyond loopback).
	Insecure bool
	// MetricsOpen serves /metrics without a key when access control is on.
	MetricsOpen bool
	// TLSCert and TLSKey are PEM files; both or neither. Reloaded on SIGHUP.
	TLSCert, TLSKey string
	// shardsGiven is set when --shards (or its variable) was given: else an
	// existing data directory keeps its count, and the default applies only
	// to a new one.
	shardsGiven bool
}

// autoInt is an int flag whose default is computed at start ("auto").
type autoInt struct {
	v   int
	set bool
}

func (a *autoInt) String() string {
	if a == nil || !a.set {
		return "auto"
	}
	return strconv.Itoa(a.v)
}

func (a *autoInt) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not an integer")
	}
	a.v, a.set = n, true
	return nil
}

// parse reads flags, then INVENTORY_* variables for the flags not given.
func parse(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("inventoryd", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "address the HTTP API listens on")
	fs.StringVar(&c.AdminAddr, "admin-addr", "", "address for pprof (/debug/pprof/); empty: off")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "directory of the manifest and the shards' WALs")
	fs.StringVar(&c.ArchiveDir, "archive-dir", "", "move each shard's sealed WAL segments older than its oldest kept snapshot to DIR/shard-NNNN after a snapshot (history keeps reading them there); empty: off")
	fs.IntVar(&c.Engine.Shards, "shards", shard.ShardsDefault, "shards, fixed when the data directory is created; not given, an existing directory's count")
	fs.DurationVar(&c.Engine.TxTimeout, "tx-timeout", shard.TxTimeoutDefault, "longest an atomic batch spanning shards waits for a shard to make its part durable, or for products other batches hold")
	fs.DurationVar(&c.Engine.Retention, "retention", shard.RetentionDefault, "how long idempotency keys are remembered (at least)")
	fs.IntVar(&c.Engine.InboxDepth, "queue-depth", shard.InboxDepthDefault, "requests a shard queues (those waiting for a parked product too) before it answers 503 overloaded")
	fs.IntVar(&c.Engine.BatchOpsMax, "batch-ops-max", shard.BatchOpsMaxDefault, "ops a shard writes with one fsync at most (>= 1000)")
	fs.IntVar(&c.Engine.SnapshotEntries, "snapshot-entries", shard.SnapshotEntriesDefault, "entries a shard writes between two snapshots of its state (start-up replays only the log after the newest)")
	fs.DurationVar(&c.Engine.SnapshotInterval, "snapshot-interval", shard.SnapshotIntervalDefault, "longest time between two snapshots of a shard that wrote anything")
	fs.IntVar(&c.WAL.SegmentBytes, "segment-bytes", 4<<20, "WAL segment file size (each shard keeps its tail segment in memory)")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", 5*time.Second, "time to read a request's headers")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", 30*time.Second, "time to read a whole request")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", 30*time.Second, "time to write a response")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 2*time.Minute, "time an idle keep-alive connection stays open")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 8*time.Second, "time to finish requests in flight on SIGTERM")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", 64<<10, "largest request line and headers")
	fs.Var(&c.MaxConns, "max-conns", fmt.Sprintf("open API connections at most; further clients wait in the listen backlog (auto: what RLIMIT_NOFILE leaves after the shards, at most %d)", maxConnsAuto))
	fs.Int64Var(&c.InflightBodyBytes, "inflight-body-bytes", httpapi.BodyBytesInflightDefault, "bytes of request bodies all requests together may hold while they are read (>= 4194304, one batch); past it: 503 overloaded")
	fs.DurationVar(&c.ReconcileInterval, "reconcile-interval", 0, "compare every shard's balances in memory with its ledger this often (0: off; 1m to 168h); POST /admin/reconcile runs one at once")
	fs.StringVar(&c.KeysFile, "keys-file", "", "JSON file of API keys ([{\"name\", \"role\": reader|writer|admin, \"sha256\"}]); turns access control on; reloaded on SIGHUP. Without it the API listens on loopback addresses only")
	fs.BoolVar(&c.Insecure, "insecure", false, "allow listening on a non-loopback address without --keys-file (anyone who reaches the port can write), and --admin-addr beyond loopback")
	fs.BoolVar(&c.MetricsOpen, "metrics-open", false, "with --keys-file: serve /metrics without a key (default: admin keys only)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate (chain) to serve HTTPS with; needs --tls-key; reloaded on SIGHUP")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: inventoryd [flags]\n       inventoryd add-key --name NAME --role reader|writer|admin [--keys-file FILE]\n       inventoryd remove-key --name NAME [--keys-file FILE]\n\nServes the inventory ledger HTTP API. Every flag can also be set by an\nenvironment variable: --data-dir is INVENTORY_DATA_DIR, and so on.\n\n")
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
			given[f.Name] = true
		}
	})
	c.shardsGiven = given["shards"]
	return c, errors.Join(errs...)
}

// Ranges of the numeric flags. A value outside is refused at start with the
// flag's name and range, never replaced by a default.
const (
	// queueDepthMax bounds a shard's queue: 8 B of channel a slot.
	queueDepthMax = 1 << 20
	// batchOpsMaxMax is far above the point where a larger batch stops
	// amortising the fsync; the journal's block limit binds before it.
	batchOpsMaxMax = 1 << 16
	// segmentBytesMin keeps segment files from multiplying (one file and one
	// directory fsync per segment); segmentBytesMax leaves room in a
	// locator's 24 offset bits for one 4 MiB block past the segment's end.
	segmentBytesMin = 64 << 10
	segmentBytesMax = 12 << 20
	// txTimeoutMax: products stay held, and clients wait, that long at most.
	txTimeoutMax = time.Minute
	// retentionMax: keys take memory for as long as they are remembered.
	retentionMax = 365 * 24 * time.Hour
	// A snapshot every 1000 entries at least: each writes the whole state
	// (a few seconds of writes at the peak rate); every 2^30 at most: the
	// replay after it takes minutes. A day at most between two.
	snapshotEntriesMin  = 1000
	snapshotEntriesMax  = 1 << 30
	snapshotIntervalMax = 24 * time.Hour
	// headerBytesMax bounds what one slow client can make the server hold.
	headerBytesMax = 1 << 20
	// inflightBodyBytesMax: bodies in flight are heap the process holds.
	inflightBodyBytesMax = 16 << 30
	// maxConnsAuto caps the derived connection limit: each connection costs
	// a goroutine and buffers (about 10 KiB).
	maxConnsAuto = 16384
)

// checkFlags refuses out-of-range flag values, naming the flag.
func (c *Config) checkFlags() []error {
	var errs []error
	ints := []struct {
		name     string
		v        int
		min, max int
	}{
		{"shards", c.Engine.Shards, 1, shard.ShardsMax},
		{"queue-depth", c.Engine.InboxDepth, 1, queueDepthMax},
		{"batch-ops-max", c.Engine.BatchOpsMax, shard.BatchRequestOpsMax, batchOpsMaxMax},
		{"segment-bytes", c.WAL.SegmentBytes, segmentBytesMin, segmentBytesMax},
		{"max-header-bytes", c.MaxHeaderBytes, 4 << 10, headerBytesMax},
		{"snapshot-entries", c.Engine.SnapshotEntries, snapshotEntriesMin, snapshotEntriesMax},
	}
	for _, f := range ints {
		if f.v < f.min || f.v > f.max {
			errs = append(errs, fmt.Errorf("--%s must be %d to %d, got %d", f.name, f.min, f.max, f.v))
		}
	}
	if b := c.InflightBodyBytes; b < httpapi.BodyBytesInflightMin || b > inflightBodyBytesMax {
		errs = append(errs, fmt.Errorf("--inflight-body-bytes must be %d (one whole batch) to %d, got %d", httpapi.BodyBytesInflightMin, int64(inflightBodyBytesMax), b))
	}
	if c.MaxConns.set && c.MaxConns.v < 1 {
		errs = append(errs, fmt.Errorf("--max-conns must be at least 1, got %d", c.MaxConns.v))
	}
	if d := c.Engine.TxTimeout; d < time.Millisecond || d > txTimeoutMax {
		errs = append(errs, fmt.Errorf("--tx-timeout must be 1ms to %s, got %s", txTimeoutMax, d))
	}
	if d := c.Engine.SnapshotInterval; d < time.Second || d > snapshotIntervalMax {
		errs = append(errs, fmt.Errorf("--snapshot-interval must be 1s to %s, got %s", snapshotIntervalMax, d))
	}
	if r := c.Engine.Retention; r < time.Second || r > retentionMax {
		errs = append(errs, fmt.Errorf("--retention must be 1s to %s, got %s", retentionMax, r))
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"read-header-timeout", c.ReadHeaderTimeout}, {"read-timeout", c.ReadTimeout},
		{"write-timeout", c.WriteTimeout}, {"idle-timeout", c.IdleTimeout}, {"shutdown-timeout", c.ShutdownTimeout}} {
		if f.v <= 0 {
			errs = append(errs, fmt.Errorf("--%s must be positive, got %s", f.name, f.v))
		}
	}
	if d := c.ReconcileInterval; d != 0 && (d < reconcileIntervalMin || d > reconcileIntervalMax) {
		errs = append(errs, fmt.Errorf("--reconcile-interval must be 0 (off) or %s to %s, got %s", reconcileIntervalMin, reconcileIntervalMax, d))
	}
	if c.ShutdownTimeout > 9*time.Second {
		errs = append(errs, fmt.Errorf("--shutdown-timeout must leave time to close the logs within 10s (at most 9s), got %s", c.ShutdownTimeout))
	}
	return errs
}

// Validate checks the settings and the relations between them.
func (c *Config) Validate() error {
	if errs := c.checkFlags(); len(errs) > 0 {
		// The engine's own checks would repeat these without flag names.
		return errors.Join(errs...)
	}
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
	if err := c.checkArchiveDir(); err != nil {
		errs = append(errs, err)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if err := c.checkExposure(); err != nil {
		errs = append(errs, err)
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
	for _, w := range cfg.exposureWarnings() {
		log.Warn(w)
	}
	var auth *httpapi.Auth
	if cfg.KeysFile != "" {
		keys, err := loadKeys(cfg.KeysFile)
		if err != nil {
			return err
		}
		if keys.Len() == 0 {
			log.Warn("the keys file lists no principal: every request but /healthz, /readyz and /ui/ is refused", "file", cfg.KeysFile)
		}
		auth = httpapi.NewAuth(keys, cfg.MetricsOpen)
	}
	// SIGHUP reloads the keys and the certificate (see reload); caught from
	// here on, so that an early one does not end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	var cert *certificate
	if cfg.TLSCert != "" {
		if cert, err = loadCertificate(cfg.TLSCert, cfg.TLSKey); err != nil {
			return err
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Engine.Registerer = reg

	if !cfg.shardsGiven {
		n, ok, err := shard.ManifestShards(cfg.DataDir)
		if err != nil {
			return err
		}
		if ok {
			cfg.Engine.Shards = n
		}
	}
	conns, nofile, err := connLimit(&cfg)
	if err != nil {
		return err
	}
	lock, err := shard.LockDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer lock.Release()
	if err := shard.PrepareDir(cfg.DataDir, cfg.Engine.Shards); err != nil {
		return err
	}
	if err := prepareArchive(&cfg, log); err != nil {
		return err
	}
	repairs := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "inventory_wal_repairs_total",
		Help: "Torn WAL tails cut back to the last whole record at start-up.",
	})
	reg.MustRegister(repairs)
	cfg.Engine.SnapshotDir = func(i int) string { return shard.SnapshotDir(cfg.DataDir, i) }
	// A shard's journal is read from the record its newest snapshot ends
	// with (0: from the start).
	cfg.Engine.OpenAfter = func(i int, after uint64, replay func(uint64, []byte) error) (shard.Journal, error) {
		l, rep, err := wal.OpenAfter(shard.ShardDir(cfg.DataDir, i), cfg.shardWAL(i), after, replay)
		if err != nil {
			return nil, err
		}
		if rep.ArchiveCleaned > 0 {
			log.Warn("wal archive cleaned up after an interrupted move", "shard", i, "files_removed", rep.ArchiveCleaned)
		}
		if rep.Repaired {
			repairs.Inc()
			log.Warn("wal tail repaired", "shard", i, "segment", rep.RepairSegment, "offset", rep.RepairOffset,
				"cut_bytes", rep.RepairCutBytes, "reason", rep.RepairReason)
		}
		return l, nil
	}
	open := func(i int, replay func(uint64, []byte) error) (shard.Journal, error) {
		return cfg.Engine.OpenAfter(i, 0, replay)
	}
	engine, err := shard.Open(cfg.Engine, open)
	if err != nil {
		return err
	}
	rc, err := newReconciler(&cfg, engine, log)
	if err != nil {
		return err
	}
	handler, err := httpapi.New(httpapi.Config{Engine: engine, Registry: reg, Logger: log, BodyBytesInflightMax: cfg.InflightBodyBytes, Reconciler: rc, Auth: auth})
	if err != nil {
		return err
	}
	if cfg.ReconcileInterval > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go reconcileEvery(ctx, rc, engine, cfg.ReconcileInterval, log)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	limited := newConnLimiter(ln, conns)
	ln = limited
	if cert != nil {
		ln = tls.NewListener(ln, cert.config())
	}
	srv := &http.Server{
		Handler:           handler,
		ConnState:         limited.ConnState,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("starting", "addr", ln.Addr().String(), "data_dir", cfg.DataDir, "shards", cfg.Engine.Shards,
		"retention", cfg.Engine.Retention.String(), "max_conns", conns, "rlimit_nofile", nofile,
		"tls", cert != nil, "access_control", auth != nil, "archive_dir", cfg.ArchiveDir)
	if auth != nil {
		log.Info("access control on", "keys_file", cfg.KeysFile, "principals", auth.Keys().Len(), "metrics_open", cfg.MetricsOpen)
	}
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
		case <-hup:
			reload(&cfg, auth, cert, log)
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

// The descriptor budget. Every connection holds a socket and, while it reads
// history, one segment file; every shard holds its tail segment and, at a
// rollover, up to three more for a moment (the new segment, the directory to
// fsync, and tidwall's reopen after a failed open). The rest of the process
// (standard streams, the poller, listeners, the lock file, /proc reads of
// the process collector) gets a fixed reserve. A connection limit inside
// this budget means a flood of connections can never take the descriptor a
// WAL rollover needs; if something else does, the write stalls and retries
// (see wal.RetryError) instead of failing the shard.
const (
	fdsPerConn   = 2
	fdsPerShard  = 4
	fdsReserved  = 64
	connsMinimum = 16 // below this the service is not worth starting
)

// connLimit raises the soft RLIMIT_NOFILE to the hard limit and returns the
// connection limit: --max-conns if given and inside the budget, else the
// budget capped at maxConnsAuto.
func connLimit(c *Config) (conns int, nofile uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			lim = raised
		}
	}
	need := uint64(fdsReserved + c.Engine.Shards*fdsPerShard)
	budget := 0
	if lim.Cur > need {
		budget = int(min((lim.Cur-need)/fdsPerConn, 1<<30))
	}
	if budget < connsMinimum {
		return 0, lim.Cur, fmt.Errorf("RLIMIT_NOFILE is %d: %d shards and the process need %d descriptors, which leaves room for %d connections (at least %d are needed); raise it (ulimit -n)",
			lim.Cur, c.Engine.Shards, need, budget, connsMinimum)
	}
	if !c.MaxConns.set {
		return min(budget, maxConnsAuto), lim.Cur, nil
	}
	if c.MaxConns.v > budget {
		return 0, lim.Cur, fmt.Errorf("--max-conns must be 1 to %d with RLIMIT_NOFILE %d (%d descriptors a connection, %d for %d shards and the process), got %d; lower it or raise the limit (ulimit -n)",
			budget, lim.Cur, fdsPerConn, need, c.Engine.Shards, c.MaxConns.v)
	}
	return c.MaxConns.v, lim.Cur, nil
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
