package shard

import "fmt"

// Code is a stable machine-readable error code. The values are part of the
// public API (the "code" field of every problem document); never rename one.
type Code string

// The codes of API.md. The HTTP layer maps each to a status in one table.
const (
	CodeInvalidRequest       Code = "invalid_request"
	CodeNotFound             Code = "not_found"
	CodeInsufficientStock    Code = "insufficient_stock"
	CodeReservationExists    Code = "reservation_exists"
	CodeReservationNotActive Code = "reservation_not_active"
	CodeCommitExceedsHold    Code = "commit_exceeds_hold"
	CodeLimitExceeded        Code = "limit_exceeded"
	CodeVersionConflict      Code = "version_conflict"
	CodeIdempotencyKeyReused Code = "idempotency_key_reused"
	CodeOverloaded           Code = "overloaded"
	CodeUnavailable          Code = "unavailable"
)

// Codes lists every code the engine can return, for tests and metrics.
var Codes = []Code{
	CodeInvalidRequest, CodeNotFound, CodeInsufficientStock, CodeReservationExists,
	CodeReservationNotActive, CodeCommitExceedsHold, CodeLimitExceeded,
	CodeVersionConflict, CodeIdempotencyKeyReused, CodeOverloaded, CodeUnavailable,
}

// Error is a refusal with a stable code. Only the fields that apply to the
// code are set; the HTTP layer turns them into problem-document extensions.
type Error struct {
	Code   Code
	Detail string

	// Available is set for insufficient_stock.
	Available int64
	// Held is set for commit_exceeds_hold.
	Held int64
	// State is set for reservation_not_active: committed, released, expired or unknown.
	State ReservationState
	// CurrentVersion is set for version_conflict.
	CurrentVersion int64
	// OpIndex is the index of the failing op of a batch, or -1.
	OpIndex int
	// Shards names the shards that are not ready, for unavailable answers
	// of the readiness check.
	Shards []int
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return string(e.Code)
	}
	return string(e.Code) + ": " + e.Detail
}

func errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...), OpIndex: -1}
}

func invalid(format string, args ...any) *Error {
	return errorf(CodeInvalidRequest, format, args...)
}

var (
	errOverloaded  = &Error{Code: CodeOverloaded, Detail: "shard queue is full, retry shortly", OpIndex: -1}
	errUnavailable = &Error{Code: CodeUnavailable, Detail: "shard is unavailable", OpIndex: -1}
	errReplaying   = &Error{Code: CodeUnavailable, Detail: "replaying the ledger after start-up", OpIndex: -1}
	errClosed      = &Error{Code: CodeUnavailable, Detail: "engine is shutting down", OpIndex: -1}
	// errConflict refuses a tx part whose product another prepared tx holds;
	// the coordinator retries the tx, and answers it only past its deadline.
	errConflict = &Error{Code: CodeOverloaded, Detail: "a product of the batch stayed held by other atomic batches until the deadline; retry shortly", OpIndex: -1}
	// errTxAborted refuses a tx part whose coordinator already gave up.
	errTxAborted = &Error{Code: CodeUnavailable, Detail: "the atomic batch was aborted", OpIndex: -1}
)

// withIndex returns a copy of e that names op i of a batch.
func (e *Error) withIndex(i int) *Error {
	c := *e
	c.OpIndex = i
	return &c
}
