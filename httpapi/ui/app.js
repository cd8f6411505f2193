// The ledger console. It reads the public API (/v1, /readyz, /metrics) and
// renders with DOM calls and textContent only, never markup from data: a
// product id or reason is user data and is always shown as text.
"use strict";

(function () {
  // token is the API token the operator entered. It lives in this variable
  // only: never in storage, the URL or the page.
  let token = "";

  const TYPES = ["ADD", "REMOVE", "RETURN", "RESERVE", "COMMIT", "RELEASE"];
  const HISTORY_LIMIT_MAX = 1000; // the API's page limit
  const PAGE_SIZES = [25, 100, 1000];
  const PAGE_SIZE_DEFAULT = 100;
  // SCAN_PAGES_MAX bounds the pages one filtered view or reservation lookup
  // reads (1000 entries each), so that a rare type on a long ledger costs a
  // bounded number of requests; "Next" goes on from where the scan stopped.
  const SCAN_PAGES_MAX = 20;
  const CHART_ENTRIES_MAX = 1000; // the chart shows the latest versions
  const HEALTH_REFRESH_MS = 10000;

  // el builds an HTML element. attrs are set as properties or attributes;
  // children are nodes or strings, and strings become text nodes.
  function el(tag, attrs, ...children) {
    const n = document.createElement(tag);
    setAttrs(n, attrs);
    append(n, children);
    return n;
  }

  const SVG_NS = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, ...children) {
    const n = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
    append(n, children);
    return n;
  }

  function setAttrs(n, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") n.className = v;
      else if (k === "text") n.textContent = String(v);
      else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
      else n.setAttribute(k, v === true ? "" : String(v));
    }
  }

  function append(n, children) {
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      n.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
  }

  function clear(n) {
    while (n.firstChild) n.removeChild(n.firstChild);
  }

  const $ = (id) => document.getElementById(id);

  // Hash routes: #/products/{id}[?after=&limit=&type=] and
  // #/products/{id}/reservations/{reservation_id}.
  function productHref(pid, q) {
    let h = "#/products/" + encodeURIComponent(pid);
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(q || {})) if (v !== undefined && v !== "" && v !== null) qs.set(k, String(v));
    const s = qs.toString();
    return s ? h + "?" + s : h;
  }

  function reservationHref(pid, rid) {
    return "#/products/" + encodeURIComponent(pid) + "/reservations/" + encodeURIComponent(rid);
  }

  function apiPath(pid) {
    return "/v1/products/" + encodeURIComponent(pid);
  }

  // ApiError is a refused or failed call: status and the problem document.
  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || "HTTP " + status);
      this.status = status;
      this.problem = problem || {};
    }
  }

  // call fetches path with the token, if any, and returns the response.
  async function call(path, accept) {
    const headers = { Accept: accept || "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    return fetch(path, { headers, cache: "no-store", credentials: "omit", redirect: "error" });
  }

  // api GETs a JSON document of the API; a refusal throws ApiError, and
  // 401/403 also raise the banner that asks for a token.
  async function api(path) {
    let res;
    try {
      res = await call(path);
    } catch (e) {
      throw new ApiError(0, { detail: "the service did not answer: " + e.message });
    }
    let body = null;
    try {
      body = await res.json();
    } catch (e) {
      body = null;
    }
    if (res.status === 401 || res.status === 403) showAuthBanner(res.status, body);
    if (!res.ok) throw new ApiError(res.status, body);
    hideAuthBanner();
    return body;
  }

  function showAuthBanner(status, problem) {
    const b = $("banner");
    clear(b);
    const detail = problem && problem.detail ? " (" + problem.detail + ")" : "";
    if (status === 401) {
      append(b, [el("strong", { text: "401 unauthorized." }),
        " Access control is on: enter an API token with the reader role above." + detail]);
    } else {
      append(b, [el("strong", { text: "403 forbidden." }),
        " The token given lacks the reader role; enter another one above." + detail]);
    }
    b.hidden = false;
  }

  function hideAuthBanner() {
    $("banner").hidden = true;
  }

  function problemBox(err) {
    const p = err.problem || {};
    return el("div", { class: "problem", role: "alert" },
      el("strong", { text: err.status ? err.status + " " + (p.code || p.title || "") : "no answer" }),
      " ", p.detail || err.message);
  }

  // tsKey makes an RFC 3339 UTC time comparable as a string: the fraction
  // padded to nine digits.
  function tsKey(t) {
    const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/.exec(t || "");
    if (!m) return t || "";
    return m[1] + "." + (m[2] || "").padEnd(9, "0");
  }

  // ---- health ----

  // parseMetrics reads the few series the health strip shows from the
  // Prometheus text format.
  function parseMetrics(text) {
    const out = { shards: 0, failed: [], stalled: [], replay: null, holds: null };
    for (const line of text.split("\n")) {
      if (line.startsWith("#")) continue;
      let m = /^inventory_shard_failed\{shard="(\d+)"\} (\S+)$/.exec(line);
      if (m) {
        out.shards++;
        if (Number(m[2]) !== 0) out.failed.push(m[1]);
        continue;
      }
      m = /^inventory_shard_stalled\{shard="(\d+)"\} (\S+)$/.exec(line);
      if (m) {
        if (Number(m[2]) !== 0) out.stalled.push(m[1]);
        continue;
      }
      m = /^inventory_replay_duration_seconds (\S+)$/.exec(line);
      if (m) out.replay = Number(m[1]);
      m = /^inventory_reservations_active (\S+)$/.exec(line);
      if (m) out.holds = Number(m[1]);
    }
    return out;
  }

  function fact(key, label, value, cls) {
    return el("span", { class: "fact " + (cls || "") },
      el("span", { class: "label", text: label }), " ", el("span", { class: "value", "data-k": key, text: value }));
  }

  async function refreshHealth() {
    const h = $("health");
    const items = [];
    try {
      const res = await call("/readyz");
      let body = null;
      try { body = await res.json(); } catch (e) { body = null; }
      if (res.ok) {
        items.push(fact("ready", "ready", "yes", "ok"));
      } else {
        items.push(fact("ready", "ready", "no (" + res.status + ")", "bad"));
        if (body && body.detail) items.push(el("span", { class: "fact bad", text: body.detail }));
      }
    } catch (e) {
      items.push(fact("ready", "ready", "no answer", "bad"));
    }
    try {
      const res = await call("/metrics", "text/plain");
      if (!res.ok) throw new Error("HTTP " + res.status);
      const m = parseMetrics(await res.text());
      items.push(fact("shards", "shards", String(m.shards)));
      items.push(fact("failed", "failed shards", m.failed.length ? m.failed.join(", ") : "none", m.failed.length ? "bad" : "ok"));
      if (m.stalled.length) items.push(fact("stalled", "stalled shards", m.stalled.join(", "), "bad"));
      if (m.replay !== null) items.push(fact("replay", "replay", m.replay.toFixed(3) + " s"));
      if (m.holds !== null) items.push(fact("holds", "active holds", String(m.holds)));
    } catch (e) {
      items.push(el("span", { class: "fact muted", text: "metrics not readable: " + e.message }));
    }
    clear(h);
    append(h, items);
  }

  // ---- views ----

  function stockCard(st, title) {
    const cell = (k, label) => el("div", { class: "num" },
      el("div", { class: "label", text: label }), el("div", { class: "value", "data-k": k, text: String(st[k]) }));
    return el("section", { class: "card stock", "aria-label": title },
      el("h2", { text: title }),
      el("div", { class: "nums" }, cell("on_hand", "on hand"), cell("reserved", "reserved"),
        cell("available", "available"), cell("version", "version")),
      el("div", { class: "muted" }, "updated ", el("time", { "data-k": "updated_at", text: st.updated_at || "" })));
  }

  const COLUMNS = [
    ["version", "ver"], ["type", "type"], ["quantity", "qty"], ["delta", "delta"], ["on_hand", "on hand"],
    ["reserved", "reserved"], ["available", "available"], ["reason", "reason"], ["created_by", "created by"],
    ["created_at", "created at"], ["reservation_id", "reservation"], ["idempotency_key", "idempotency key"],
  ];

  function ledgerTable(entries) {
    const head = el("tr", {}, COLUMNS.map(([, label]) => el("th", { scope: "col", text: label })));
    const rows = entries.map((e) => el("tr", { "data-version": String(e.version) }, COLUMNS.map(([k]) => {
      const v = e[k];
      if (k === "type") return el("td", { "data-k": k }, el("span", { class: "type t-" + (TYPES.includes(v) ? v : "other"), text: v }));
      if (k === "reservation_id" && v) return el("td", { "data-k": k }, el("a", { href: reservationHref(e.product_id, v), text: v }));
      if (k === "delta" && v > 0) return el("td", { "data-k": k, class: "n", text: "+" + v });
      const numeric = ["version", "quantity", "delta", "on_hand", "reserved", "available"].includes(k);
      return el("td", { "data-k": k, class: numeric ? "n" : (k === "created_at" ? "time" : ""),
        title: k === "created_at" ? "entry " + e.id : undefined, text: v === undefined || v === null ? "" : String(v) });
    })));
    return el("table", { class: "ledger" }, el("thead", {}, head), el("tbody", {}, rows));
  }

  // chart draws on_hand, reserved and available as step lines over versions.
  function chart(entries) {
    const W = 900, H = 220, L = 56, R = 12, T = 12, B = 34;
    if (entries.length === 0) return el("p", { class: "muted", text: "No entries to chart." });
    const v0 = entries[0].version, v1 = entries[entries.length - 1].version + 1;
    let max = 1;
    for (const e of entries) max = Math.max(max, e.on_hand, e.reserved, e.available);
    const x = (v) => L + (v - v0) / Math.max(1, v1 - v0) * (W - L - R);
    const y = (q) => T + (1 - q / max) * (H - T - B);
    const series = [["on_hand", "on hand"], ["reserved", "reserved"], ["available", "available"]];
    const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
      "aria-label": `balances over versions ${v0} to ${v1 - 1}` });
    g.appendChild(svg("line", { x1: L, y1: y(0), x2: W - R, y2: y(0), class: "axis" }));
    g.appendChild(svg("line", { x1: L, y1: T, x2: L, y2: y(0), class: "axis" }));
    for (const q of [0, max / 2, max]) {
      g.appendChild(svg("text", { x: L - 6, y: y(q) + 4, class: "tick", "text-anchor": "end" }, String(Math.round(q))));
    }
    g.appendChild(svg("text", { x: L, y: H - 16, class: "tick" }, "v" + v0));
    g.appendChild(svg("text", { x: W - R, y: H - 16, class: "tick", "text-anchor": "end" }, "v" + (v1 - 1)));
    g.appendChild(svg("text", { x: L, y: H - 3, class: "tick" }, entries[0].created_at));
    g.appendChild(svg("text", { x: W - R, y: H - 3, class: "tick", "text-anchor": "end" }, entries[entries.length - 1].created_at));
    for (const [k, label] of series) {
      const pts = [];
      entries.forEach((e, i) => {
        const next = i + 1 < entries.length ? entries[i + 1].version : v1;
        pts.push(x(e.version).toFixed(1) + "," + y(e[k]).toFixed(1), x(next).toFixed(1) + "," + y(e[k]).toFixed(1));
      });
      g.appendChild(svg("polyline", { points: pts.join(" "), class: "line s-" + k }, svg("title", {}, label)));
    }
    const legend = el("div", { class: "legend" }, series.map(([k, label]) => el("span", { class: "key s-" + k, text: label })));
    return el("div", {}, g, legend);
  }

  async function historyPage(pid, after, limit) {
    return api(apiPath(pid) + "/transactions?after=" + after + "&limit=" + limit);
  }

  // ledgerPage loads one page of the ledger from after: limit entries, or
  // with a type filter, up to limit entries of that type within at most
  // SCAN_PAGES_MAX full pages. next is the after of the following page.
  async function ledgerPage(pid, after, limit, type) {
    if (!type) {
      const p = await historyPage(pid, after, limit);
      return { entries: p.transactions, next: p.next_after, scannedTo: null };
    }
    const out = [];
    let cur = after;
    for (let i = 0; i < SCAN_PAGES_MAX; i++) {
      const p = await historyPage(pid, cur, HISTORY_LIMIT_MAX);
      for (const e of p.transactions) {
        if (e.type !== type) continue;
        out.push(e);
        if (out.length === limit) {
          const more = e.version < p.transactions[p.transactions.length - 1].version || p.next_after !== undefined;
          return { entries: out, next: more ? e.version : undefined, scannedTo: e.version };
        }
      }
      if (p.next_after === undefined) return { entries: out, next: undefined, scannedTo: null };
      cur = p.next_after;
    }
    return { entries: out, next: cur, scannedTo: cur };
  }

  function parseQuery(s) {
    const q = new URLSearchParams(s || "");
    const int = (k, d) => {
      const v = q.get(k);
      return v !== null && /^\d{1,15}$/.test(v) ? Number(v) : d;
    };
    const limit = int("limit", PAGE_SIZE_DEFAULT);
    return {
      after: int("after", 0),
      limit: PAGE_SIZES.includes(limit) ? limit : PAGE_SIZE_DEFAULT,
      type: TYPES.includes(q.get("type")) ? q.get("type") : "",
    };
  }

  async function productView(view, pid, query) {
    const q = parseQuery(query);
    const title = el("h1", {}, "Product ", el("span", { class: "id", "data-k": "product_id", text: pid }));
    append(view, [title]);
    let st;
    try {
      st = await api(apiPath(pid));
    } catch (e) {
      append(view, [problemBox(e)]);
      return;
    }
    const top = el("div", { class: "row" }, stockCard(st, "Stock now"), asOfCard(pid));
    const chartBox = el("section", { class: "card" }, el("h2", { text: "Balances over versions" }), el("p", { class: "muted", text: "Loading…" }));
    const ledgerBox = el("section", { class: "card", id: "ledger" });
    append(view, [top, reservationCard(pid), chartBox, ledgerBox]);

    const from = Math.max(0, st.version - CHART_ENTRIES_MAX);
    historyPage(pid, from, CHART_ENTRIES_MAX).then((p) => {
      chartBox.replaceChild(chart(p.transactions), chartBox.lastChild);
      if (from > 0) chartBox.appendChild(el("p", { class: "muted", text: `The latest ${CHART_ENTRIES_MAX} versions of ${st.version}.` }));
    }, (e) => chartBox.replaceChild(problemBox(e), chartBox.lastChild));

    const typeSel = el("select", { id: "type-filter", "aria-label": "entry type",
      onchange: () => { location.hash = productHref(pid, { limit: q.limit, type: typeSel.value }); } },
    el("option", { value: "", text: "all types" }), TYPES.map((t) => el("option", { value: t, text: t })));
    typeSel.value = q.type;
    const sizeSel = el("select", { id: "page-size", "aria-label": "entries per page",
      onchange: () => { location.hash = productHref(pid, { after: q.after, limit: sizeSel.value, type: q.type }); } },
    PAGE_SIZES.map((n) => el("option", { value: String(n), text: n + " a page" })));
    sizeSel.value = String(q.limit);
    append(ledgerBox, [el("h2", { text: "Ledger" }), el("div", { class: "toolbar" }, typeSel, sizeSel)]);
    try {
      const page = await ledgerPage(pid, q.after, q.limit, q.type);
      const first = page.entries.length ? page.entries[0].version : null;
      const last = page.entries.length ? page.entries[page.entries.length - 1].version : null;
      const nav = el("nav", { class: "pager" },
        el("a", { id: "page-first", href: productHref(pid, { limit: q.limit, type: q.type }), text: "First" }),
        page.next !== undefined ? el("a", { id: "page-next", href: productHref(pid, { after: page.next, limit: q.limit, type: q.type }), text: "Next" }) : null,
        q.type ? null : el("a", { id: "page-last", href: productHref(pid, { after: Math.max(0, st.version - q.limit), limit: q.limit }), text: "Latest" }),
        el("span", { class: "muted", id: "page-range",
          text: first === null ? `no ${q.type || ""} entries after version ${q.after}` : `versions ${first}–${last} of ${st.version}` +
            (q.type ? ` (${q.type} only)` : "") }));
      append(ledgerBox, [nav, el("div", { class: "scroll" }, ledgerTable(page.entries))]);
    } catch (e) {
      append(ledgerBox, [problemBox(e)]);
    }
  }

  // asOfCard asks for the stock at a chosen time: GET ?as_of=.
  function asOfCard(pid) {
    const input = el("input", { id: "asof-input", name: "as_of", required: true, spellcheck: "false",
      placeholder: "2026-12-02T10:00:00Z", "aria-label": "time (RFC 3339)" });
    input.value = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    const out = el("div", { id: "asof-result" });
    const form = el("form", { class: "inline", autocomplete: "off", onsubmit: async (ev) => {
      ev.preventDefault();
      clear(out);
      const t = input.value.trim();
      try {
        const st = await api(apiPath(pid) + "?as_of=" + encodeURIComponent(t));
        append(out, [stockCard(st, "Stock as of " + t)]);
      } catch (e) {
        append(out, [problemBox(e)]);
      }
    } }, input, el("button", { type: "submit", text: "Stock at this time" }));
    return el("section", { class: "card", "aria-label": "stock at a time" },
      el("h2", { text: "Stock at a time" }), form, out);
  }

  function reservationCard(pid) {
    const input = el("input", { id: "reservation-input", required: true, maxlength: "128", spellcheck: "false",
      placeholder: "order-77", "aria-label": "reservation id" });
    return el("section", { class: "card" }, el("h2", { text: "Reservation" }),
      el("form", { class: "inline", autocomplete: "off", onsubmit: (ev) => {
        ev.preventDefault();
        location.hash = reservationHref(pid, input.value.trim());
      } }, input, el("button", { type: "submit", text: "Look up" })));
  }

  // firstAt returns the smallest version in 1..hi whose entry was created
  // at or after t (hi+1 if none): entries are in time order, so a binary
  // search with one-entry pages finds it in log2(hi) requests.
  async function firstAt(pid, t, hi) {
    const k = tsKey(t);
    let lo = 1, ans = hi + 1;
    while (lo <= hi) {
      const mid = Math.floor((lo + hi) / 2);
      const p = await historyPage(pid, mid - 1, 1);
      if (tsKey(p.transactions[0].created_at) >= k) {
        ans = mid;
        hi = mid - 1;
      } else {
        lo = mid + 1;
      }
    }
    return ans;
  }

  // entriesAt returns the entries of reservation rid created at exactly t.
  async function entriesAt(pid, rid, t, version) {
    const out = [];
    const k = tsKey(t);
    let after = (await firstAt(pid, t, version)) - 1;
    for (let i = 0; i < SCAN_PAGES_MAX && after < version; i++) {
      const p = await historyPage(pid, after, HISTORY_LIMIT_MAX);
      for (const e of p.transactions) {
        if (tsKey(e.created_at) !== k) return out;
        if (e.reservation_id === rid) out.push(e);
      }
      if (p.next_after === undefined) break;
      after = p.next_after;
    }
    return out;
  }

  async function reservationView(view, pid, rid) {
    append(view, [el("h1", {}, "Reservation ", el("span", { class: "id", "data-k": "reservation_id", text: rid }),
      " of ", el("a", { class: "id", href: productHref(pid), "data-k": "product_id", text: pid }))]);
    let r, st;
    try {
      r = await api(apiPath(pid) + "/reservations/" + encodeURIComponent(rid));
      st = await api(apiPath(pid));
    } catch (e) {
      append(view, [problemBox(e)]);
      return;
    }
    const row = (k, label) => el("tr", {}, el("th", { scope: "row", text: label }),
      el("td", { "data-k": k, text: r[k] === undefined || r[k] === null ? "—" : String(r[k]) }));
    append(view, [el("section", { class: "card" }, el("h2", { text: "Hold" }),
      el("table", { class: "facts" }, el("tbody", {}, row("state", "state"), row("quantity", "quantity held"),
        row("created_at", "created at"), row("expires_at", "expires at"), row("settled_at", "settled at"))))]);
    const box = el("section", { class: "card" }, el("h2", { text: "Its ledger entries" }), el("p", { class: "muted", text: "Searching the ledger…" }));
    append(view, [box]);
    try {
      const entries = await entriesAt(pid, rid, r.created_at, st.version);
      if (r.settled_at && tsKey(r.settled_at) !== tsKey(r.created_at)) {
        entries.push(...await entriesAt(pid, rid, r.settled_at, st.version));
      }
      box.replaceChild(el("div", { class: "scroll" }, ledgerTable(entries)), box.lastChild);
    } catch (e) {
      box.replaceChild(problemBox(e), box.lastChild);
    }
  }

  function homeView(view) {
    const pInput = el("input", { id: "home-product", required: true, maxlength: "128", spellcheck: "false", placeholder: "sku-1", "aria-label": "product id" });
    const rInput = el("input", { id: "home-reservation", required: true, maxlength: "128", spellcheck: "false", placeholder: "order-77", "aria-label": "reservation id" });
    append(view, [
      el("h1", { text: "Ledger console" }),
      el("p", { text: "Open a product for its stock, its balances over time and its ledger, or look up a reservation." }),
      el("section", { class: "card" }, el("h2", { text: "Reservation lookup" }),
        el("form", { class: "inline", autocomplete: "off", onsubmit: (ev) => {
          ev.preventDefault();
          location.hash = reservationHref(pInput.value.trim(), rInput.value.trim());
        } }, pInput, rInput, el("button", { type: "submit", text: "Look up" }))),
    ]);
  }

  // route renders the view the hash names. A newer navigation supersedes
  // an older one still loading: only the latest writes to the page.
  let routeSeq = 0;

  async function route() {
    const seq = ++routeSeq;
    const view = el("div", { "data-route": location.hash || "#/" });
    const main = $("view");
    clear(main);
    main.appendChild(view);
    main.setAttribute("aria-busy", "true");
    const [path, query] = (location.hash.replace(/^#/, "") || "/").split("?");
    const parts = path.split("/").filter(Boolean).map((s) => {
      try { return decodeURIComponent(s); } catch (e) { return s; }
    });
    try {
      if (parts[0] === "products" && parts.length === 2) {
        $("product-input").value = parts[1];
        await productView(view, parts[1], query);
      } else if (parts[0] === "products" && parts.length === 4 && parts[2] === "reservations") {
        await reservationView(view, parts[1], parts[3]);
      } else {
        homeView(view);
      }
    } finally {
      if (seq === routeSeq) {
        main.setAttribute("aria-busy", "false");
        view.setAttribute("data-ready", "true");
      }
    }
  }

  function init() {
    $("product-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const pid = $("product-input").value.trim();
      if (pid) location.hash = productHref(pid);
    });
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      token = $("token-input").value.trim();
      $("token-input").value = "";
      $("token-state").textContent = token ? "token set (memory only)" : "no token";
      route();
      refreshHealth();
    });
    $("token-forget").addEventListener("click", () => {
      token = "";
      $("token-state").textContent = "no token";
      route();
      refreshHealth();
    });
    window.addEventListener("hashchange", route);
    route();
    refreshHealth();
    setInterval(refreshHealth, HEALTH_REFRESH_MS);
  }

  init();
})();
