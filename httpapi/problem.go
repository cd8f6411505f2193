package httpapi

import (
	"net/http"

	"github.com/inventory-ledger/inventory/shard"
)

// Codes the HTTP layer adds to the engine's: they are about the request's
// form or the route, not the ledger.
const (
	codePayloadTooLarge  shard.Code = "payload_too_large"
	codeMethodNotAllowed shard.Code = "method_not_allowed"
	codeUnauthorized     shard.Code = "unauthorized" // reserved for access control
	codeForbidden        shard.Code = "forbidden"    // reserved for access control
	codeInternal         shard.Code = "internal_error"
)

// retryAfterSeconds is the Retry-After of every 503: a shard queue drains in
// milliseconds and a replay takes seconds at most, so one second is soon
// enough to retry and long enough not to hammer a struggling service.
const retryAfterSeconds = "1"

// problemType is how one code is answered.
type problemType struct {
	status int
	title  string
	// retryAfter is the Retry-After header value, or "".
	retryAfter string
}

// problems is the one table that maps every code to its HTTP status and
// title. openapi.json lists the same codes with the same statuses (checked
// by TestOpenAPIMatchesServer).
var problems = map[shard.Code]problemType{
	shard.CodeInvalidRequest:       {http.StatusBadRequest, "Invalid request", ""},
	codeUnauthorized:               {http.StatusUnauthorized, "Unauthorized", ""},
	codeForbidden:                  {http.StatusForbidden, "Forbidden", ""},
	shard.CodeNotFound:             {http.StatusNotFound, "Not found", ""},
	codeMethodNotAllowed:           {http.StatusMethodNotAllowed, "Method not allowed", ""},
	codePayloadTooLarge:            {http.StatusRequestEntityTooLarge, "Payload too large", ""},
	shard.CodeInsufficientStock:    {http.StatusConflict, "Insufficient stock", ""},
	shard.CodeReservationExists:    {http.StatusConflict, "Reservation exists", ""},
	shard.CodeReservationNotActive: {http.StatusConflict, "Reservation not active", ""},
	shard.CodeCommitExceedsHold:    {http.StatusConflict, "Commit exceeds hold", ""},
	shard.CodeLimitExceeded:        {http.StatusConflict, "Limit exceeded", ""},
	shard.CodeVersionConflict:      {http.StatusPreconditionFailed, "Version conflict", ""},
	shard.CodeIdempotencyKeyReused: {http.StatusUnprocessableEntity, "Idempotency key reused", ""},
	codeInternal:                   {http.StatusInternalServerError, "Internal error", ""},
	shard.CodeOverloaded:           {http.StatusServiceUnavailable, "Overloaded", retryAfterSeconds},
	shard.CodeUnavailable:          {http.StatusServiceUnavailable, "Unavailable", retryAfterSeconds},
}

// problemOf returns how err's code is answered; a code missing from the table
// is our bug and answers as an internal error.
func problemOf(code shard.Code) problemType {
	if p, ok := problems[code]; ok {
		return p
	}
	return problems[codeInternal]
}

// problemTypePrefix makes a code's "type" URI.
const problemTypePrefix = "urn:inventory:problem:"

// newError returns a refusal with code and detail, not tied to a batch op.
func newError(code shard.Code, detail string) *shard.Error {
	return &shard.Error{Code: code, Detail: detail, OpIndex: -1}
}

func invalid(detail string) *shard.Error { return newError(shard.CodeInvalidRequest, detail) }

// encodeProblem writes err as an RFC 9457 problem document, with the
// extension members that apply to its code.
func encodeProblem(w encoder, err *shard.Error) {
	p := problemOf(err.Code)
	n := 5
	switch err.Code {
	case shard.CodeInsufficientStock, shard.CodeCommitExceedsHold, shard.CodeReservationNotActive, shard.CodeVersionConflict:
		n++
	}
	if err.OpIndex >= 0 {
		n++
	}
	if len(err.Shards) > 0 {
		n++
	}
	w.object(n)
	w.key("type")
	w.strParts(problemTypePrefix, string(err.Code))
	w.key("title")
	w.str(p.title)
	w.key("status")
	w.int(int64(p.status))
	w.key("detail")
	w.str(err.Detail)
	w.key("code")
	w.str(string(err.Code))
	switch err.Code {
	case shard.CodeInsufficientStock:
		w.key("available")
		w.int(err.Available)
	case shard.CodeCommitExceedsHold:
		w.key("held")
		w.int(err.Held)
	case shard.CodeReservationNotActive:
		w.key("state")
		w.str(err.State.String())
	case shard.CodeVersionConflict:
		w.key("current_version")
		w.int(err.CurrentVersion)
	}
	if err.OpIndex >= 0 {
		w.key("op_index")
		w.int(int64(err.OpIndex))
	}
	if len(err.Shards) > 0 {
		w.key("shards")
		w.array(len(err.Shards))
		for _, i := range err.Shards {
			w.int(int64(i))
		}
		w.end()
	}
	w.end()
}
