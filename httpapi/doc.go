// Package httpapi serves the inventory ledger's HTTP API (API.md) on a
// shard.Engine. It translates HTTP to engine ops and the engine's coded
// errors to RFC 9457 problem documents, in one table (problems); it holds no
// business rule of its own. openapi.json, served at /openapi.json, is the
// full contract, including every choice API.md leaves open.
//
// A write is handled in this order:
//
//  1. Route (echo's router; an unknown path is 404 not_found, a known path
//     with another method 405 method_not_allowed with an Allow header).
//  2. Access control, when Config.Auth is set (authorize): the route's
//     class by pattern and method (routeAccess) names the role it needs;
//     "Authorization: Bearer <secret>" is hashed once (SHA-256), looked up
//     in an immutable map swapped whole on reload (atomic.Pointer), and the
//     digest compared in constant time. No or an unknown key: 401
//     unauthorized with WWW-Authenticate; a role too low: 403 forbidden.
//     An authenticated request's X-Actor is replaced by the principal's
//     name, so created_by is the principal. /healthz, /readyz,
//     /openapi.json and /ui/ (the console's static files) are open.
//     A new route falls into its class by where it lives: GET under /v1/
//     needs a reader, other methods under /v1/ a writer, anything under
//     /admin/ or /v1/admin/ an admin. A route in no class is served
//     admin-only and fails TestEveryRouteHasARole.
//  3. Size: a Content-Length over the endpoint's limit is 413 at once; a
//     chunked body is cut off at the limit while it is read.
//  4. Query and headers: no query parameters; Idempotency-Key, If-Match and
//     X-Actor are parsed strictly (400 on anything off-format).
//  5. Body: read into pooled buffers that grow with the bytes that arrive,
//     never sized from Content-Length; all bodies being read or decoded
//     share one budget (Config.BodyBytesInflightMax), and a body whose next
//     buffer would pass it is 503 overloaded at once. Decoded strictly,
//     JSON or msgpack by Content-Type, by a reader that knows the schema:
//     exact field names, no unknown or duplicate fields, no type
//     conversions, integers without fraction or exponent, nothing after the
//     document. Schema errors are 400 for the whole request; values out of
//     range are left to shard.Op.Validate, so that in a non-atomic batch
//     they are that op's 400. The buffer goes back once the body is
//     decoded: the ops hold copies of their strings.
//  6. Engine: Write or Batch, which validates the op, checks idempotency,
//     the expected version and stock, and answers after the fsync.
//  7. Answer: encoded by hand (encodeEntry, encodeStock, ...) into a pooled
//     buffer, JSON or msgpack by Accept; the full body, or under Prefer:
//     return=minimal (RFC 7240, read by preferReturn) only the entries' ids
//     and versions and the balances after them, with Preference-Applied.
//     Problems are always application/problem+json, whatever the Prefer.
//
// GET /v1/products/{product_id}?as_of= (asof.go) reads the stock as of a
// past time from the ledger; POST /admin/reconcile (reconcile.go) runs a
// shard.Reconciler and answers its report.
//
// Every request is timed into inventory_http_request_duration_seconds by
// route pattern, method and status. Every refusal answered is counted once
// in inventory_rejections_total by code, here and nowhere else: in
// writeProblem, and for the refused ops inside a non-atomic batch's 200 in
// postBatch. A panic is logged with its stack and answered 500
// internal_error. inventory_ready is 1 while /readyz would answer 200.
//
// The ledger console (package ui) is served at /ui/: its three files only,
// under the Content-Security-Policy of ui.ContentSecurityPolicy. It is a
// client of the public API like any other and is not in openapi.json.
package httpapi
