package httpapi

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The monitoring files in deploy/, checked against what the service
// really exports.
var (
	dashboardFile  = filepath.Join("..", "deploy", "grafana", "inventory.json")
	alertsFile     = filepath.Join("..", "deploy", "prometheus", "alerts.yml")
	alertTestsFile = filepath.Join("..", "deploy", "prometheus", "alerts_test.yml")
)

// TestMonitoringMetricsExist parses every PromQL expression of the Grafana
// dashboard and the alert rules, and checks that each metric they name is
// in a scrape of a served engine after a few writes (a histogram's
// _bucket, _sum and _count series by the histogram's name), and that the
// dashboard shows what an operator needs.
func TestMonitoringMetricsExist(t *testing.T) {
	ts := newTestServer(t, serverOptions{shards: 2, engineMetrics: true})
	ts.mustWrite("p", `{"type":"ADD","quantity":5}`)
	ts.mustWrite("p", `{"type":"RESERVE","quantity":2,"reservation_id":"o1"}`)
	ts.mustWrite("p", `{"type":"COMMIT","reservation_id":"o1"}`)
	ts.write("p", `{"type":"REMOVE","quantity":99}`) // a refusal
	w := ts.do(req{method: "GET", path: "/metrics"})
	if w.Code != 200 {
		t.Fatalf("GET /metrics: %d", w.Code)
	}
	exported := scrapeTypes(w.Body.String())

	exprs := dashboardExprs(t)
	alerts := alertExprs(t)
	if len(exprs) < 10 || len(alerts) < 6 {
		t.Fatalf("found %d dashboard and %d alert expressions: the files or their parsing changed", len(exprs), len(alerts))
	}
	used := map[string]bool{}
	for _, e := range append(exprs, alerts...) {
		names, err := metricNames(e)
		if err != nil {
			t.Errorf("%s: %v", e, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s names no metric", e)
		}
		for _, n := range names {
			base, ok := resolveMetric(n, exported)
			if !ok {
				t.Errorf("%s: metric %s is not exported by the service", e, n)
			}
			used[base] = true
		}
	}
	for _, m := range []string{
		"inventory_transactions_total", "inventory_rejections_total", "inventory_http_request_duration_seconds",
		"inventory_wal_fsync_duration_seconds", "inventory_wal_batch_entries", "inventory_shard_queue_depth",
		"inventory_reservations_active", "inventory_reservations_expired_total", "inventory_replay_duration_seconds",
		"inventory_shard_failed", "inventory_ready",
	} {
		if !used[m] {
			t.Errorf("no dashboard panel or alert uses %s", m)
		}
	}
}

// scrapeTypes returns each metric family of a text-format scrape with its
// type, from the # TYPE lines.
func scrapeTypes(text string) map[string]string {
	types := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
		}
	}
	return types
}

// resolveMetric returns the family a series name belongs to: itself, or a
// histogram's (or summary's) for its _bucket, _sum and _count series.
func resolveMetric(name string, types map[string]string) (string, bool) {
	if _, ok := types[name]; ok {
		return name, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		switch types[base] {
		case "histogram":
			return base, true
		case "summary":
			return base, suffix != "_bucket"
		}
	}
	return name, false
}

// dashboardExprs returns every expr of the dashboard and the metric of
// every label_values() query of its variables.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []string
	labelValues := regexp.MustCompile(`label_values\(\s*([^,)]+)`)
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if s, ok := c.(string); ok {
					switch {
					case k == "expr":
						out = append(out, s)
					case k == "query" || k == "definition":
						if m := labelValues.FindStringSubmatch(s); m != nil {
							out = append(out, m[1])
						}
					}
				}
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(doc)
	return out
}

// alertExprs returns the expr of every rule in the alerts file: one-line
// values and block scalars (expr: |).
func alertExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var out []string
	rules := 0
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(strings.TrimSpace(l), "- alert:") || strings.HasPrefix(strings.TrimSpace(l), "- record:") {
			rules++
		}
		indent := len(l) - len(strings.TrimLeft(l, " "))
		v, ok := strings.CutPrefix(strings.TrimSpace(l), "expr:")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if v != "|" && v != ">" && v != "|-" && v != ">-" {
			out = append(out, strings.Trim(v, `'`))
			continue
		}
		var block []string
		for i+1 < len(lines) {
			n := lines[i+1]
			if strings.TrimSpace(n) != "" && len(n)-len(strings.TrimLeft(n, " ")) <= indent {
				break
			}
			block = append(block, n)
			i++
		}
		out = append(out, strings.Join(block, "\n"))
	}
	if len(out) != rules {
		t.Fatalf("%s: %d rules but %d exprs parsed", alertsFile, rules, len(out))
	}
	return out
}

// promqlSkipGroup are the keywords followed by a parenthesised label list.
var promqlSkipGroup = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true}

// promqlWords are keywords that are not metrics: binary operators,
// modifiers, and the aggregation operators, which may be followed by a
// by/without clause rather than by their parenthesis.
var promqlWords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"atan2": true, "inf": true, "nan": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true}

// metricNames returns the metric names of a PromQL expression: the
// identifiers that are not functions, keywords, label names (inside {},
// by (), on () ...), durations, numbers, strings or Grafana variables.
func metricNames(expr string) ([]string, error) {
	var names []string
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	// skipTo returns the index after the close that matches the opener at
	// i, skipping quoted strings.
	skipTo := func(i int, open, close byte) (int, error) {
		depth := 0
		for ; i < len(expr); i++ {
			switch c := expr[i]; c {
			case '"', '\'', '`':
				j := strings.IndexByte(expr[i+1:], c)
				if j < 0 {
					return 0, fmt.Errorf("unterminated string at %d", i)
				}
				i += j + 1
			case open:
				depth++
			case close:
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
		}
		return 0, fmt.Errorf("no %c to close %c", close, open)
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := strings.IndexByte(expr[i+1:], c)
			if j < 0 {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			i += j + 2
		case c == '{':
			j, err := skipTo(i, '{', '}')
			if err != nil {
				return nil, err
			}
			i = j
		case c == '[':
			j, err := skipTo(i, '[', ']')
			if err != nil {
				return nil, err
			}
			i = j
		case c == '$' || c >= '0' && c <= '9' || c == '.':
			// A Grafana variable, a number or a duration.
			for i++; i < len(expr) && (isIdent(expr[i], false) || expr[i] == '.'); i++ {
			}
		case isIdent(c, true):
			j := i
			for j < len(expr) && isIdent(expr[j], false) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && (expr[k] == ' ' || expr[k] == '\n' || expr[k] == '\t') {
				k++
			}
			i = j
			switch {
			case promqlSkipGroup[word]:
				if k < len(expr) && expr[k] == '(' {
					end, err := skipTo(k, '(', ')')
					if err != nil {
						return nil, err
					}
					i = end
				}
			case promqlWords[strings.ToLower(word)]:
			case k < len(expr) && expr[k] == '(':
				// a function
			default:
				if !slices.Contains(names, word) {
					names = append(names, word)
				}
			}
		default:
			i++
		}
	}
	return names, nil
}

func TestMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`histogram_quantile(0.99, sum by (shard, le) (rate(a_bucket{job=~"$job",x="y}"}[$__rate_interval]))) > 0.05`, []string{"a_bucket"}},
		{`sum(rate(a[5m])) / sum without (le) (b offset 1h) and on (instance) group_left(shard) c > bool 1e-3`, []string{"a", "b", "c"}},
		{"min by (job) (up)\n  == 0", []string{"up"}},
		{`label_replace(x, "dst", "$1", "src", "(.*)")`, []string{"x"}},
	} {
		got, err := metricNames(c.expr)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("metricNames(%q) = %q, %v; want %q", c.expr, got, err, c.want)
		}
	}
}

// TestAlertRules runs promtool on the alert rules: the syntax check, and
// the unit tests of alerts_test.yml (each alert fires where it should and
// not where it should not).
func TestAlertRules(t *testing.T) {
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		var err error
		if promtool, err = exec.LookPath("promtool"); err != nil {
			t.Skip("promtool not found (PROMTOOL, or on PATH): install Debian's prometheus package to check the alert rules")
		}
	}
	for _, args := range [][]string{
		{"check", "rules", filepath.Base(alertsFile)},
		{"test", "rules", filepath.Base(alertTestsFile)},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = filepath.Dir(alertsFile)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
