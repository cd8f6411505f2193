package main

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"strings"
	"time"
)

// result is one run, as reported.
type result struct {
	Config       *config
	Target       string
	Started      time.Time
	EndedEarly   bool
	Open         *openStats
	Verification *verification
	VerifyTime   time.Duration
	measured
}

func (r *result) mode() string {
	if r.Config.rate > 0 {
		return "open"
	}
	return "closed"
}

// jsonResult is the -json document.
type jsonResult struct {
	Scenario      string           `json:"scenario"`
	Mode          string           `json:"mode"`
	Target        string           `json:"target"`
	Concurrency   int              `json:"concurrency"`
	Rate          int64            `json:"rate,omitempty"`
	Seed          uint64           `json:"seed"`
	Nonce         string           `json:"nonce"`
	Started       time.Time        `json:"started"`
	WarmupS       float64          `json:"warmup_s"`
	DurationS     float64          `json:"duration_s"` // the measured window as it ran
	EndedEarly    bool             `json:"ended_early"`
	Requests      int64            `json:"requests"`
	ThroughputRPS float64          `json:"throughput_rps"`
	Ops           int64            `json:"ops"`
	OpsOK         int64            `json:"ops_ok"`
	OpsPerS       float64          `json:"ops_per_s"`
	Latency       Latency          `json:"latency_ms"`
	Statuses      map[string]int64 `json:"statuses"`
	ErrorCodes    map[string]int64 `json:"error_codes"`
	RunStatuses   map[string]int64 `json:"run_statuses"`
	RunErrorCodes map[string]int64 `json:"run_error_codes"`
	OpErrorCodes  map[string]int64 `json:"op_error_codes"`
	OpenLoop      *openStats       `json:"open_loop,omitempty"`
	Timeline      []Second         `json:"timeline"`
	Distribution  []Percentile     `json:"distribution"`
	Verified      bool             `json:"verified"`
	Verification  *verification    `json:"verification"`
	VerifyS       float64          `json:"verify_s"`
	Params        map[string]any   `json:"params"`
}

func (r *result) throughput() (rps, ops float64) {
	s := r.window.Seconds()
	if s <= 0 {
		return 0, 0
	}
	return float64(r.requests) / s, float64(r.opsOK) / s
}

func (r *result) params() map[string]any {
	c := r.Config
	var p map[string]any
	switch c.scenario {
	case "flashsale":
		p = map[string]any{"units": c.units, "commit": c.commit}
	case "checkout":
		p = map[string]any{"products": c.products, "stock": c.stock, "zipf": c.zipf, "outcomes": c.outcomes, "expire_ttl_s": c.expireTTL.Seconds()}
	case "mixed":
		p = map[string]any{"products": c.products, "stock": c.stock, "zipf": c.zipf, "mix": c.mix}
	default:
		p = map[string]any{"products": c.products, "stock": c.stock, "ops_per_request": c.opsPerRequest, "op": c.op}
	}
	if c.minimal {
		p["prefer"] = "return=minimal"
	}
	return p
}

func (r *result) json() jsonResult {
	rps, ops := r.throughput()
	return jsonResult{
		Scenario: r.Config.scenario, Mode: r.mode(), Target: r.Target, Concurrency: r.Config.concurrency,
		Rate: r.Config.rate, Seed: r.Config.seed, Nonce: r.Config.nonce, Started: r.Started.UTC(),
		WarmupS: r.Config.warmup.Seconds(), DurationS: r.window.Seconds(), EndedEarly: r.EndedEarly,
		Requests: r.requests, ThroughputRPS: rps, Ops: r.ops, OpsOK: r.opsOK, OpsPerS: ops,
		Latency: r.latency, Statuses: r.statuses, ErrorCodes: r.codes,
		RunStatuses: r.allStatuses, RunErrorCodes: r.allCodes, OpErrorCodes: r.allOpCodes,
		OpenLoop: r.Open, Timeline: r.timeline, Distribution: r.curve,
		Verified: r.Verification.Verified, Verification: r.Verification, VerifyS: r.VerifyTime.Seconds(),
		Params: r.params(),
	}
}

func writeJSON(path string, r *result) error {
	b, err := json.MarshalIndent(r.json(), "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// writeSummary prints the human summary.
func writeSummary(w io.Writer, r *result) {
	rps, ops := r.throughput()
	c := r.Config
	fmt.Fprintf(w, "scenario %s, %s loop", c.scenario, r.mode())
	if c.rate > 0 {
		fmt.Fprintf(w, " at %d steps/s", c.rate)
	} else {
		fmt.Fprintf(w, ", %d clients", c.concurrency)
	}
	fmt.Fprintf(w, ", target %s, seed %d, nonce %s", r.Target, c.seed, c.nonce)
	if c.minimal {
		fmt.Fprint(w, ", Prefer: return=minimal")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "measured   %.2fs after %v warm-up", r.window.Seconds(), c.warmup)
	if r.EndedEarly {
		fmt.Fprint(w, " (the scenario ended the run early)")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "requests   %d  (%.0f req/s)\n", r.requests, rps)
	if r.ops != r.requests {
		fmt.Fprintf(w, "ops        %d carried, %d took effect  (%.0f ops/s)\n", r.ops, r.opsOK, ops)
	}
	l := r.latency
	fmt.Fprintf(w, "latency    p50 %.3fms  p90 %.3fms  p99 %.3fms  p99.9 %.3fms  max %.3fms  mean %.3fms\n",
		l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
	fmt.Fprintf(w, "statuses   %s\n", formatCounts(r.statuses))
	fmt.Fprintf(w, "codes      %s\n", formatCounts(r.codes))
	if len(r.allOpCodes) > 0 {
		fmt.Fprintf(w, "op codes   %s (whole run)\n", formatCounts(r.allOpCodes))
	}
	if o := r.Open; o != nil {
		fmt.Fprintf(w, "open loop  sent %d, dropped %d (cap %d in flight), late %d (max lag %.2fms), most in flight %d\n",
			o.Sent, o.Dropped, o.Cap, o.Late, o.MaxLagMS, o.MaxInflight)
		if o.Dropped > 0 {
			fmt.Fprintln(w, "WARNING    steps were dropped at the in-flight cap: the service fell behind the rate, latencies understate")
		}
	}
	if len(r.timeline) > 0 {
		fmt.Fprintln(w, "timeline   second   count  errors  4xx    p50ms    p99ms")
		for _, s := range r.timeline {
			fmt.Fprintf(w, "           %6d %7d %7d %4d %8.2f %8.2f\n", s.Second, s.Count, s.Errors, s.Rejected, s.P50, s.P99)
		}
	}
	v := r.Verification
	switch {
	case v.Skipped:
		fmt.Fprintln(w, "verified   skipped (-verify=false)")
	default:
		fmt.Fprintf(w, "verified   %v: %d products, %d ledger entries, %d acknowledged, %d unknown outcomes, in %.1fs\n",
			v.Verified, v.Products, v.Entries, v.Acked, v.Unknown, r.VerifyTime.Seconds())
		if v.Facts != nil {
			b, _ := json.Marshal(v.Facts)
			fmt.Fprintf(w, "totals     %s\n", b)
		}
		for _, p := range v.Problems {
			fmt.Fprintf(w, "PROBLEM    %s\n", p)
		}
	}
}

// ---- chart ----

// svgChart is a line chart drawn as inline SVG.
type svgChart struct {
	title, xLabel, yLabel string
	xs                    []float64
	series                []svgSeries
	xTicks                []svgTick // fixed x ticks; none: linear ticks
	logY                  bool
}

type svgSeries struct {
	name  string
	color string
	ys    []float64
}

type svgTick struct {
	x     float64
	label string
}

const (
	chartW, chartH = 900, 360
	padL, padR     = 70, 20
	padT, padB     = 40, 50
)

func (c svgChart) render() string {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`,
		chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="15" font-weight="bold">%s</text>`, padL, html.EscapeString(c.title))
	if len(c.xs) == 0 {
		b.WriteString(`<text x="100" y="150">no data</text></svg>`)
		return b.String()
	}
	xMin, xMax := c.xs[0], c.xs[len(c.xs)-1]
	if xMax <= xMin {
		xMax = xMin + 1
	}
	yMax := 0.0
	yMin := math.Inf(1)
	for _, s := range c.series {
		for _, y := range s.ys {
			yMax = max(yMax, y)
			if y > 0 {
				yMin = min(yMin, y)
			}
		}
	}
	if yMax <= 0 {
		yMax = 1
	}
	tf := func(y float64) float64 { return y }
	var yTicks []float64
	if c.logY {
		lo := math.Pow(10, math.Floor(math.Log10(min(yMin, yMax))))
		hi := math.Pow(10, math.Ceil(math.Log10(yMax)))
		if hi <= lo {
			hi = lo * 10
		}
		tf = func(y float64) float64 { return math.Log10(max(y, lo)) }
		for t := lo; t <= hi*1.0001; t *= 10 {
			yTicks = append(yTicks, t)
		}
		yMin, yMax = lo, hi
	} else {
		step := niceStep(yMax / 5)
		yMax = math.Ceil(yMax/step) * step
		yMin = 0
		for t := 0.0; t <= yMax*1.0001; t += step {
			yTicks = append(yTicks, t)
		}
	}
	pw, ph := float64(chartW-padL-padR), float64(chartH-padT-padB)
	px := func(x float64) float64 { return padL + (x-xMin)/(xMax-xMin)*pw }
	py := func(y float64) float64 { return padT + ph - (tf(y)-tf(yMin))/(tf(yMax)-tf(yMin))*ph }
	for _, t := range yTicks {
		y := py(t)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`, padL, y, chartW-padR, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, padL-6, y+4, fmtNum(t))
	}
	xt := c.xTicks
	if len(xt) == 0 {
		step := niceStep((xMax - xMin) / 10)
		for t := math.Ceil(xMin/step) * step; t <= xMax+1e-9; t += step {
			xt = append(xt, svgTick{t, fmtNum(t)})
		}
	}
	for _, t := range xt {
		x := px(t.x)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>`, x, padT, x, chartH-padB)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`, x, chartH-padB+16, html.EscapeString(t.label))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#888"/>`, padL, padT, pw, ph)
	fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">%s</text>`, padL+pw/2, chartH-10, html.EscapeString(c.xLabel))
	fmt.Fprintf(&b, `<text x="16" y="%.0f" text-anchor="middle" transform="rotate(-90 16 %.0f)">%s</text>`,
		padT+ph/2, padT+ph/2, html.EscapeString(c.yLabel))
	for i, s := range c.series {
		var pts strings.Builder
		for j, y := range s.ys {
			fmt.Fprintf(&pts, "%.1f,%.1f ", px(c.xs[j]), py(y))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, s.color, pts.String())
		lx := chartW - padR - 160
		ly := padT + 16 + i*16
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/><text x="%d" y="%d">%s</text>`,
			lx, ly-4, lx+20, ly-4, s.color, lx+26, ly, html.EscapeString(s.name))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func fmtNum(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 1:
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.1f", v), "0"), ".")
	default:
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
	}
}

// writeChart writes a self-contained HTML page: latency over time (p50
// and p99 per second), throughput per second, and the latency
// distribution by percentile (x is -log10(1-p), so 90, 99, 99.9 are
// evenly spaced).
func writeChart(path string, r *result) error {
	var secs, p50, p99, counts []float64
	for _, s := range r.timeline {
		secs = append(secs, float64(s.Second))
		p50 = append(p50, s.P50)
		p99 = append(p99, s.P99)
		counts = append(counts, float64(s.Count))
	}
	overTime := svgChart{title: "Latency per second (ms, from intended send time in open loop)", xLabel: "second of the measured window",
		yLabel: "ms", xs: secs, logY: true,
		series: []svgSeries{{"p50", "#1f77b4", p50}, {"p99", "#d62728", p99}}}
	rate := svgChart{title: "Requests per second", xLabel: "second of the measured window", yLabel: "requests",
		xs: secs, series: []svgSeries{{"requests", "#2ca02c", counts}}}
	var xs, ys []float64
	for _, p := range r.curve {
		if p.Percentile >= 100 {
			continue
		}
		xs = append(xs, -math.Log10(1-p.Percentile/100))
		ys = append(ys, p.MS)
	}
	var ticks []svgTick
	for _, t := range []struct {
		p string
		x float64
	}{{"0%", 0}, {"90%", 1}, {"99%", 2}, {"99.9%", 3}, {"99.99%", 4}, {"99.999%", 5}} {
		if len(xs) > 0 && t.x <= xs[len(xs)-1]+1e-9 {
			ticks = append(ticks, svgTick{t.x, t.p})
		}
	}
	dist := svgChart{title: fmt.Sprintf("Latency by percentile (ms; max %.2f ms)", r.latency.Max), xLabel: "percentile",
		yLabel: "ms", xs: xs, xTicks: ticks, logY: true, series: []svgSeries{{"latency", "#9467bd", ys}}}

	var sum strings.Builder
	writeSummary(&sum, r)
	page := `<!doctype html><html><head><meta charset="utf-8"><title>inventory bench: ` + html.EscapeString(r.Config.scenario) +
		`</title><style>body{font-family:sans-serif;margin:20px}pre{background:#f6f6f6;padding:10px;font-size:12px}</style></head><body>` +
		`<h2>inventory bench — ` + html.EscapeString(r.Config.scenario+", "+r.mode()+" loop") + `</h2>` +
		overTime.render() + `<br>` + rate.render() + `<br>` + dist.render() +
		`<pre>` + html.EscapeString(sum.String()) + `</pre></body></html>` + "\n"
	return os.WriteFile(path, []byte(page), 0o644)
}
