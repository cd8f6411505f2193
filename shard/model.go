package shard

import (
	"encoding/hex"
	"strconv"
	"unicode/utf8"
)

// Type is the kind of a ledger entry.
type Type uint8

// Entry types. The numeric values are stored in the WAL; never reorder them.
const (
	TypeAdd Type = iota + 1
	TypeRemove
	TypeReturn
	TypeReserve
	TypeCommit
	TypeRelease
	typeEnd
)

var typeNames = [...]string{"", "ADD", "REMOVE", "RETURN", "RESERVE", "COMMIT", "RELEASE"}

func (t Type) String() string {
	if t == 0 || t >= typeEnd {
		return "Type(" + strconv.Itoa(int(t)) + ")"
	}
	return typeNames[t]
}

// ParseType returns the type named s (exact, upper case).
func ParseType(s string) (Type, bool) {
	for t := TypeAdd; t < typeEnd; t++ {
		if typeNames[t] == s {
			return t, true
		}
	}
	return 0, false
}

// Types lists every entry type, for metrics.
var Types = []Type{TypeAdd, TypeRemove, TypeReturn, TypeReserve, TypeCommit, TypeRelease}

// Limits of API.md. Each bounds memory per entry and the size of a WAL block.
const (
	// QuantityMax bounds one movement; with StockMax it keeps every sum far
	// from int64 overflow.
	QuantityMax = 1_000_000_000
	// StockMax is the largest on_hand a product may reach.
	StockMax = 1_000_000_000_000_000
	// IDBytesMax bounds product and reservation ids (and X-Actor).
	IDBytesMax = 128
	// KeyBytesMax bounds an idempotency key.
	KeyBytesMax = 255
	// ReasonBytesMax bounds the free-text reason of an entry.
	ReasonBytesMax = 256
	// TTLSecondsMax is the longest hold: one week.
	TTLSecondsMax = 604_800
	// TTLSecondsDefault applies when a RESERVE names no ttl.
	TTLSecondsDefault = 900
	// ActorDefault is created_by when the request names no actor.
	ActorDefault = "anonymous"
	// ActorSystem is created_by of entries the service writes itself (expiry).
	ActorSystem = "system"
	// ReasonExpired is the reason of an expiry RELEASE.
	ReasonExpired = "expired"
)

// Origin says why an entry was written. It is stored in the WAL but not shown
// in the API: it lets replay tell an expiry from a client RELEASE, and the
// RELEASE that completes a partial COMMIT from a request of its own.
type Origin uint8

const (
	// OriginRequest is an entry a client asked for.
	OriginRequest Origin = iota
	// OriginContinuation continues the request of the entry just before it on
	// the same product (the RELEASE of the rest after a partial COMMIT).
	OriginContinuation
	// OriginExpiry is the RELEASE of a hold whose TTL passed.
	OriginExpiry
	originEnd
)

// ID is a ledger entry id: a UUIDv7 whose 48-bit millisecond time and 12-bit
// sub-millisecond fraction come from created_at and whose 62 low bits hold
// the shard (14 bits) and the shard's entry counter (48 bits). It is unique
// without randomness, time-ordered, and rebuilt identically by replay.
type ID [16]byte

func makeID(createdAt int64, shard int, counter uint64) ID {
	var id ID
	ms := uint64(createdAt / 1e6)
	frac := uint64(createdAt%1e6) * 4096 / 1e6 // 12 bits of the sub-millisecond part
	id[0], id[1], id[2], id[3], id[4], id[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	id[6] = 0x70 | byte(frac>>8)
	id[7] = byte(frac)
	low := uint64(shard&0x3fff)<<48 | counter&(1<<48-1)
	id[8] = 0x80 | byte(low>>56)&0x3f
	id[9], id[10], id[11], id[12], id[13], id[14], id[15] = byte(low>>48), byte(low>>40), byte(low>>32), byte(low>>24), byte(low>>16), byte(low>>8), byte(low)
	return id
}

// String formats the id as a canonical lower-case UUID.
func (id ID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], id[10:16])
	return string(b[:])
}

// Entry is one immutable ledger entry. Times are Unix nanoseconds (UTC).
type Entry struct {
	ID        ID
	ProductID string
	Type      Type
	// Quantity is the amount the entry moved (always positive).
	Quantity int64
	// Delta is the signed effect on available.
	Delta int64
	// OnHand and Reserved are the balances right after the entry.
	OnHand   int64
	Reserved int64
	// Version is the entry's position in the product's ledger: 1, 2, 3 ...
	Version       int64
	ReservationID string
	// ExpiresAt is the deadline of a RESERVE; 0 for other types.
	ExpiresAt      int64
	Reason         string
	CreatedBy      string
	CreatedAt      int64
	IdempotencyKey string
	// Fingerprint identifies the request that wrote the entry (0 for entries
	// without an idempotency key). Not shown in the API.
	Fingerprint uint64
	Origin      Origin
}

// Available is the balance clients can still take.
func (e *Entry) Available() int64 { return e.OnHand - e.Reserved }

// Stock is the derived state of one product.
type Stock struct {
	ProductID string
	OnHand    int64
	Reserved  int64
	Version   int64
	UpdatedAt int64
}

// Available is on hand minus reserved.
func (s Stock) Available() int64 { return s.OnHand - s.Reserved }

// stockAfter is the stock a product had right after e.
func stockAfter(e *Entry) Stock {
	return Stock{ProductID: e.ProductID, OnHand: e.OnHand, Reserved: e.Reserved, Version: e.Version, UpdatedAt: e.CreatedAt}
}

// ReservationState is the life-cycle state of a hold.
type ReservationState uint8

// Reservation states; StateUnknown is only used in reservation_not_active.
const (
	StateUnknown ReservationState = iota
	StateActive
	StateCommitted
	StateReleased
	StateExpired
)

var stateNames = [...]string{"unknown", "active", "committed", "released", "expired"}

func (s ReservationState) String() string {
	if int(s) >= len(stateNames) {
		return "state(" + strconv.Itoa(int(s)) + ")"
	}
	return stateNames[s]
}

// Reservation is the state of one hold, as GET .../reservations/{id} shows it.
type Reservation struct {
	ProductID     string
	ReservationID string
	Quantity      int64
	State         ReservationState
	ExpiresAt     int64
	CreatedAt     int64
	// SettledAt is the created_at of the entry that settled the hold; 0 while active.
	SettledAt int64
}

// NoVersion marks an Op without an expected version.
const NoVersion = -1

// Op is one requested change. Zero values mean "absent": Quantity 0 on a
// COMMIT commits all held, TTLSeconds 0 on a RESERVE is the default.
type Op struct {
	ProductID     string
	Type          Type
	Quantity      int64
	ReservationID string
	TTLSeconds    int64
	Reason        string
	// IdempotencyKey is required on every write.
	IdempotencyKey string
	// ExpectedVersion is NoVersion or the version the product must have.
	ExpectedVersion int64
	// Actor becomes created_by; empty means ActorDefault.
	Actor string
}

// Validate checks the op's fields against API.md's limits and fills defaults
// (ttl, actor). It is the "validation (400)" step of every write.
func (op *Op) Validate() *Error {
	if err := checkID("product_id", op.ProductID); err != nil {
		return err
	}
	if op.Type == 0 || op.Type >= typeEnd {
		return invalid("type must be one of ADD, REMOVE, RETURN, RESERVE, COMMIT, RELEASE")
	}
	if err := checkKey(op.IdempotencyKey); err != nil {
		return err
	}
	if op.ExpectedVersion < NoVersion {
		return invalid("expected_version must be a non-negative integer")
	}
	if len(op.Reason) > ReasonBytesMax {
		return invalid("reason must be at most %d bytes", ReasonBytesMax)
	}
	if !utf8.ValidString(op.Reason) {
		return invalid("reason must be valid UTF-8")
	}
	if op.Actor == "" {
		op.Actor = ActorDefault
	} else if err := checkID("actor", op.Actor); err != nil {
		return err
	}
	quantityOK := func() *Error {
		if op.Quantity < 1 || op.Quantity > QuantityMax {
			return invalid("quantity must be an integer from 1 to %d", QuantityMax)
		}
		return nil
	}
	switch op.Type {
	case TypeAdd, TypeRemove, TypeReturn:
		if err := quantityOK(); err != nil {
			return err
		}
		if op.ReservationID != "" {
			return invalid("reservation_id does not apply to %s", op.Type)
		}
	case TypeReserve, TypeCommit, TypeRelease:
		if err := checkID("reservation_id", op.ReservationID); err != nil {
			return err
		}
		switch op.Type {
		case TypeReserve:
			if err := quantityOK(); err != nil {
				return err
			}
		case TypeCommit:
			if op.Quantity != 0 {
				if err := quantityOK(); err != nil {
					return err
				}
			}
		case TypeRelease:
			if op.Quantity != 0 {
				return invalid("quantity does not apply to RELEASE")
			}
		}
	}
	if op.Type == TypeReserve {
		if op.TTLSeconds == 0 {
			op.TTLSeconds = TTLSecondsDefault
		}
		if op.TTLSeconds < 1 || op.TTLSeconds > TTLSecondsMax {
			return invalid("ttl_seconds must be an integer from 1 to %d", TTLSecondsMax)
		}
	} else if op.TTLSeconds != 0 {
		return invalid("ttl_seconds applies only to RESERVE")
	}
	return nil
}

// CheckID reports whether s is a valid product or reservation id:
// 1-128 bytes of [A-Za-z0-9._~:@-].
func CheckID(s string) bool {
	if len(s) == 0 || len(s) > IDBytesMax {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !idByte[s[i]] {
			return false
		}
	}
	return true
}

// CheckKey reports whether s is a valid idempotency key: 1-255 bytes of
// printable ASCII (0x21-0x7E).
func CheckKey(s string) bool {
	if len(s) == 0 || len(s) > KeyBytesMax {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func checkID(field, s string) *Error {
	if !CheckID(s) {
		if s == "" {
			return invalid("%s is required", field)
		}
		return invalid("%s must be 1-%d bytes of [A-Za-z0-9._~:@-]", field, IDBytesMax)
	}
	return nil
}

func checkKey(s string) *Error {
	if !CheckKey(s) {
		if s == "" {
			return invalid("an idempotency key is required on every write")
		}
		return invalid("idempotency key must be 1-%d bytes of printable ASCII", KeyBytesMax)
	}
	return nil
}

var idByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "._~:@-" {
		t[c] = true
	}
	return t
}()

// fingerprint identifies a request for idempotency: product, type, quantity,
// reservation_id, ttl_seconds (after defaulting), reason and expected version.
// It is FNV-1a (stable across processes, since it is stored in the WAL) over
// a length-prefixed encoding, so no two distinct requests share an input.
func (op *Op) fingerprint() uint64 {
	h := uint64(fnvOffset)
	num := func(v int64) {
		u := uint64(v)
		for i := 0; i < 8; i++ {
			h ^= u & 0xff
			h *= fnvPrime
			u >>= 8
		}
	}
	str := func(s string) {
		num(int64(len(s)))
		h = fnv1a(h, s)
	}
	str(op.ProductID)
	num(int64(op.Type))
	num(op.Quantity)
	str(op.ReservationID)
	num(op.TTLSeconds)
	str(op.Reason)
	num(op.ExpectedVersion)
	if h == 0 { // 0 marks "no request"
		h = 1
	}
	return h
}
