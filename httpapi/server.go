package httpapi

import (
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/inventory-ledger/inventory/shard"
)

// Config configures the HTTP API.
type Config struct {
	// Engine serves every /v1 request.
	Engine *shard.Engine
	// Registry receives the HTTP metrics and is what /metrics serves. The
	// caller registers the Go and process collectors (and the engine's
	// metrics) on it.
	Registry *prometheus.Registry
	// Logger receives internal errors only (panics, unexpected errors); there
	// are no per-request logs. Default: discard.
	Logger *slog.Logger
	// BodyBytesInflightMax bounds the bytes of request-body buffers that
	// all requests together hold while their bodies are read and decoded
	// (see bodyBuf); a body whose next buffer would pass it is refused at
	// once with 503 overloaded. 0 means BodyBytesInflightDefault; otherwise
	// it must be at least BodyBytesInflightMin.
	BodyBytesInflightMax int64
	// Reconciler, if set, serves POST /admin/reconcile; without it that
	// route answers 503 unavailable.
	Reconciler *shard.Reconciler
	// Auth turns access control on (see authorize); nil leaves every
	// endpoint open and takes created_by from X-Actor.
	Auth *Auth
}

// Server timeouts set on the returned Echo's Server, for callers that start
// it with Echo.Start; a caller with its own http.Server sets its own.
const (
	// readHeaderTimeout bounds a slow client's hold on a connection before
	// the request is known.
	readHeaderTimeout = 5 * time.Second
	// readTimeout allows a 4 MiB batch body over a slow link.
	readTimeout = 30 * time.Second
	// writeTimeout covers the engine's answer (one fsync, milliseconds) and
	// the longest response, a 1,000-entry history page.
	writeTimeout = 30 * time.Second
	// idleTimeout frees keep-alive connections that load balancers forget.
	idleTimeout = 120 * time.Second
	// headerBytesMax bounds request headers; ours need well under 1 KiB.
	headerBytesMax = 64 << 10
)

//go:embed openapi.json
var openAPI []byte

// Route patterns, in echo's syntax. openapi.json describes the same routes
// with {name} parameters (checked by TestOpenAPIMatchesServer).
const (
	routeTransactions = "/v1/products/:product_id/transactions"
	routeProduct      = "/v1/products/:product_id"
	routeReservation  = "/v1/products/:product_id/reservations/:reservation_id"
	routeBatch        = "/v1/batch"
	routeHealth       = "/healthz"
	routeReady        = "/readyz"
	routeMetrics      = "/metrics"
	routeOpenAPI      = "/openapi.json"
	// routeConsole serves the ledger console's files (package ui);
	// routeConsoleRoot sends /ui to /ui/, where the page's relative links
	// resolve.
	routeConsole     = "/ui/*"
	routeConsoleRoot = "/ui"
	// routeUnmatched labels requests that matched no route.
	routeUnmatched = "unmatched"
)

// server holds what the handlers share.
type server struct {
	engine *shard.Engine
	log    *slog.Logger
	m      *httpMetrics
	bodies bodyBudget
	// reconciler serves POST /admin/reconcile; nil when not configured.
	reconciler *shard.Reconciler
	auth       *Auth // nil: access control off
}

// New returns an Echo that serves the API of API.md on cfg.Engine. The
// Echo has no banner and no logger middleware; its HTTPErrorHandler answers
// every error as a problem document.
func New(cfg Config) (*echo.Echo, error) {
	if cfg.Engine == nil {
		return nil, errors.New("httpapi: Config.Engine is required")
	}
	if cfg.Registry == nil {
		return nil, errors.New("httpapi: Config.Registry is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.BodyBytesInflightMax == 0:
		cfg.BodyBytesInflightMax = BodyBytesInflightDefault
	case cfg.BodyBytesInflightMax < BodyBytesInflightMin:
		return nil, fmt.Errorf("httpapi: Config.BodyBytesInflightMax %d is below %d, one whole batch",
			cfg.BodyBytesInflightMax, BodyBytesInflightMin)
	}
	s := &server{engine: cfg.Engine, log: cfg.Logger, reconciler: cfg.Reconciler, auth: cfg.Auth}
	s.bodies.max = cfg.BodyBytesInflightMax
	m, err := newHTTPMetrics(cfg.Registry, &s.bodies, func() bool { return cfg.Engine.Readiness() == nil })
	if err != nil {
		return nil, err
	}
	s.m = m

	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.Server.ReadHeaderTimeout = readHeaderTimeout
	e.Server.ReadTimeout = readTimeout
	e.Server.WriteTimeout = writeTimeout
	e.Server.IdleTimeout = idleTimeout
	e.Server.MaxHeaderBytes = headerBytesMax
	e.HTTPErrorHandler = s.handleError
	// On e.Use, not on a group: group middleware turns 405 into 404. It
	// also runs for the router's not-found and method-not-allowed handlers.
	e.Use(s.instrument)

	e.POST(routeTransactions, s.postTransaction)
	e.GET(routeTransactions, s.getHistory)
	e.GET(routeProduct, s.getStock)
	e.GET(routeReservation, s.getReservation)
	e.POST(routeBatch, s.postBatch)
	e.GET(routeHealth, s.healthz)
	e.GET(routeReady, s.readyz)
	e.GET(routeMetrics, echo.WrapHandler(promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{
		ErrorLog: slogErrorLog{cfg.Logger},
	})))
	e.GET(routeOpenAPI, s.openAPI)
	e.GET(routeConsoleRoot, s.consoleRoot)
	e.GET(routeConsole, s.console)
	e.POST(routeReconcile, s.postReconcile)
	return e, nil
}

// routeLabel writes an echo route pattern as API.md and openapi.json do:
// /v1/products/:product_id becomes /v1/products/{product_id}.
func routeLabel(pattern string) string {
	parts := strings.Split(pattern, "/")
	for i, p := range parts {
		if strings.HasPrefix(p, ":") {
			parts[i] = "{" + p[1:] + "}"
		}
	}
	return strings.Join(parts, "/")
}

// slogErrorLog passes promhttp's errors to the logger.
type slogErrorLog struct{ log *slog.Logger }

func (l slogErrorLog) Println(v ...any) { l.log.Error("serving metrics", "err", fmt.Sprint(v...)) }

// instrument times every request, checks access (authorize) when access
// control is on, answers a handler's error as a problem, and turns a panic
// (our bug) into a logged 500. Access control is a call here rather than a
// middleware of its own: echo builds the middleware chain anew for every
// request, and one more link is one more allocation on the hot path.
func (s *server) instrument(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("panic serving a request", "method", c.Request().Method, "route", c.Path(),
					"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				s.writeProblem(c, newError(codeInternal, "the server failed; this is a bug"))
				s.m.observe(c, start)
			}
		}()
		err := s.authorize(c)
		if err == nil {
			err = next(c)
		}
		if err != nil {
			s.handleError(err, c)
		}
		s.m.observe(c, start)
		return nil
	}
}

// handleError is the HTTPErrorHandler: every error leaves as a problem
// document. Engine refusals are *shard.Error; the router's 404 and 405 are
// echo.HTTPErrors; anything else is unexpected, logged, and a 500.
func (s *server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var se *shard.Error
	if errors.As(err, &se) {
		s.writeProblem(c, se)
		return
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusNotFound:
			s.writeProblem(c, newError(shard.CodeNotFound, "no resource at this path"))
			return
		case http.StatusMethodNotAllowed:
			allow := c.Response().Header().Get(echo.HeaderAllow)
			s.writeProblem(c, newError(codeMethodNotAllowed,
				c.Request().Method+" is not allowed on "+routeLabel(c.Path())+"; allowed: "+allow))
			return
		}
	}
	s.log.Error("unexpected error serving a request", "method", c.Request().Method, "route", c.Path(), "err", err)
	s.writeProblem(c, newError(codeInternal, "the server failed; this is a bug"))
}

// writeProblem answers err as application/problem+json with its code's
// status, and Retry-After where the code has one. It is the one place that
// counts a refused request in inventory_rejections_total (postBatch counts
// the refused ops inside a non-atomic batch's 200).
func (s *server) writeProblem(c echo.Context, err *shard.Error) {
	if c.Response().Committed {
		return
	}
	p := problemOf(err.Code)
	if _, ok := problems[err.Code]; !ok {
		s.log.Error("error code missing from the problem table", "code", string(err.Code), "detail", err.Detail)
	}
	s.m.rejected(err.Code)
	h := c.Response().Header()
	h["Content-Type"] = hdrProblem
	h["Cache-Control"] = hdrNoStore
	if p.retryAfter != "" {
		h["Retry-After"] = hdrRetry
	}
	delete(h, "Etag")
	delete(h, "Idempotent-Replayed")
	sc := getScratch()
	defer sc.put()
	sc.je = jsonEncoder{b: sc.je.b[:0]}
	encodeProblem(&sc.je, err)
	s.write(c, p.status, sc.je.b)
}

// autoLengthBytesMax is net/http's chunking buffer: a handler that writes
// less than that and returns gets a Content-Length computed for it, without
// the allocations of setting the header here.
const autoLengthBytesMax = 2048

// write sends body with status.
func (s *server) write(c echo.Context, status int, body []byte) {
	res := c.Response()
	if len(body) >= autoLengthBytesMax {
		res.Header()["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	res.WriteHeader(status)
	if c.Request().Method != http.MethodHead {
		res.Write(body) // an error here is the client's connection: nothing to do
	}
}

// httpMetrics holds the request-duration histogram and its children,
// resolved once per (route, method, code) and kept in a copy-on-write map so
// that the hot path is one lock-free map read, and the rejection counters.
type httpMetrics struct {
	duration *prometheus.HistogramVec
	mu       sync.Mutex // serialises additions to children
	children atomic.Pointer[map[obsKey]prometheus.Observer]
	// rejections has a counter for every code of the problem table,
	// resolved in newHTTPMetrics and only read afterwards.
	rejections map[shard.Code]prometheus.Counter
}

type obsKey struct {
	route, method string
	code          int
}

// newHTTPMetrics registers the HTTP layer's metrics on reg; ready reports
// what /readyz would answer (true for 200), for inventory_ready.
func newHTTPMetrics(reg prometheus.Registerer, bodies *bodyBudget, ready func() bool) (*httpMetrics, error) {
	m := &httpMetrics{duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "inventory_http_request_duration_seconds",
		Help: "Time from routing a request to writing its answer, by route pattern, method and status code.",
		// 100µs .. 6.5s: a write is one fsync batch (sub-millisecond to a
		// few ms); the top buckets catch stalls.
		Buckets: prometheus.ExponentialBuckets(100e-6, 2, 17),
	}, []string{"route", "method", "code"})}
	inflight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "inventory_http_body_inflight_bytes",
		Help: "Bytes of request-body buffers held by requests whose bodies are being read or decoded; bounded by Config.BodyBytesInflightMax (--inflight-body-bytes).",
	}, func() float64 { return float64(bodies.used.Load()) })
	readyGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "inventory_ready",
		Help: "1 while /readyz answers 200 (every shard has replayed and can write), else 0.",
	}, func() float64 {
		if ready() {
			return 1
		}
		return 0
	})
	rejections := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "inventory_rejections_total",
		Help: "Refusals answered, by problem code: every problem document the API sends (a whole request refused, /readyz's 503 included) plus every refused op inside a non-atomic batch's 200. An atomic batch refused counts once.",
	}, []string{"code"})
	m.rejections = make(map[shard.Code]prometheus.Counter, len(problems))
	for c := range problems {
		m.rejections[c] = rejections.WithLabelValues(string(c))
	}
	for _, c := range []prometheus.Collector{m.duration, inflight, readyGauge, rejections} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("httpapi: register metrics: %w", err)
		}
	}
	m.children.Store(&map[obsKey]prometheus.Observer{})
	return m, nil
}

// rejected counts one refusal with code; a code missing from the problem
// table (our bug, logged by writeProblem) counts as internal_error, as it is
// answered.
func (m *httpMetrics) rejected(code shard.Code) {
	c, ok := m.rejections[code]
	if !ok {
		c = m.rejections[codeInternal]
	}
	c.Inc()
}

// methods are the method label values; any other method is "other", so a
// client cannot grow the label set.
var methods = map[string]string{
	http.MethodGet: http.MethodGet, http.MethodHead: http.MethodHead, http.MethodPost: http.MethodPost,
	http.MethodPut: http.MethodPut, http.MethodPatch: http.MethodPatch, http.MethodDelete: http.MethodDelete,
	http.MethodOptions: http.MethodOptions, http.MethodConnect: http.MethodConnect, http.MethodTrace: http.MethodTrace,
}

func (m *httpMetrics) observe(c echo.Context, start time.Time) {
	k := obsKey{route: c.Path(), method: methods[c.Request().Method], code: c.Response().Status}
	if k.route == "" {
		k.route = routeUnmatched
	}
	if k.method == "" {
		k.method = "other"
	}
	o, ok := (*m.children.Load())[k]
	if !ok {
		o = m.child(k)
	}
	o.Observe(time.Since(start).Seconds())
}

// child resolves and caches the observer of k.
func (m *httpMetrics) child(k obsKey) prometheus.Observer {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.children.Load()
	if o, ok := old[k]; ok {
		return o
	}
	o := m.duration.WithLabelValues(routeLabel(k.route), k.method, strconv.Itoa(k.code))
	next := make(map[obsKey]prometheus.Observer, len(old)+1)
	for kk, v := range old {
		next[kk] = v
	}
	next[k] = o
	m.children.Store(&next)
	return o
}
