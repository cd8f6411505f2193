package httpapi

import (
	"errors"
	"strconv"

	"github.com/inventory-ledger/inventory/shard"
)

// Op marks an absent field with its zero value (Quantity 0 on a COMMIT is
// "all held", TTLSeconds 0 the default ttl). A field that is present with a
// value Op cannot carry (an explicit 0, an empty id, an integer beyond int64)
// is handed to the engine as one of these instead: each is outside every
// range, so Op.Validate refuses it with its own precise detail and the rules
// stay in one place.
const (
	presentInvalidInt     int64 = -1
	presentInvalidVersion int64 = shard.NoVersion - 1
	presentInvalidID            = " " // outside the id charset
)

// Field bits, for duplicate detection.
const (
	fieldProductID = 1 << iota
	fieldType
	fieldQuantity
	fieldReservationID
	fieldTTL
	fieldReason
	fieldKey
	fieldExpectedVersion
)

var fieldNames = map[uint]string{
	fieldProductID: "product_id", fieldType: "type", fieldQuantity: "quantity",
	fieldReservationID: "reservation_id", fieldTTL: "ttl_seconds", fieldReason: "reason",
	fieldKey: "idempotency_key", fieldExpectedVersion: "expected_version",
}

// fieldError is a schema error at a named place of the body.
func fieldError(path string, err error) *shard.Error {
	var te *typeError
	var se *syntaxError
	switch {
	case errors.As(err, &se):
		return invalid("malformed body: " + se.Error())
	case errors.As(err, &te) && path == "":
		return invalid("the body " + te.Error())
	case path == "":
		return invalid("malformed body: " + err.Error())
	}
	return invalid(path + ": " + err.Error())
}

// opDecoder reads one op object. batch allows the fields that a single
// write takes from its path and headers instead.
type opDecoder struct {
	r     reader
	batch bool
}

// decode reads an op object into op, whose ProductID, ExpectedVersion and
// Actor the caller has already set. index is the op's in its batch, -1 for
// a single write; it names the op in error details (opName).
func (d *opDecoder) decode(op *shard.Op, index int) *shard.Error {
	r := d.r
	if err := r.object(); err != nil {
		return fieldError(opName(index), err)
	}
	var seen uint
	for {
		name, ok, err := r.key()
		if err != nil {
			return fieldError("", err)
		}
		if !ok {
			return nil
		}
		var bit uint
		switch string(name) {
		case "type":
			bit = fieldType
		case "quantity":
			bit = fieldQuantity
		case "reservation_id":
			bit = fieldReservationID
		case "ttl_seconds":
			bit = fieldTTL
		case "reason":
			bit = fieldReason
		case "product_id":
			bit = fieldProductID
		case "idempotency_key":
			bit = fieldKey
		case "expected_version":
			bit = fieldExpectedVersion
		}
		if bit == 0 || !d.batch && bit&(fieldProductID|fieldKey|fieldExpectedVersion) != 0 {
			return invalid(opPrefix(index) + "unknown field " + strconv.Quote(string(name)) + fieldHint(string(name), d.batch))
		}
		if seen&bit != 0 {
			return invalid(opPrefix(index) + "duplicate field " + strconv.Quote(string(name)))
		}
		seen |= bit
		switch bit {
		case fieldType:
			s, err := r.str()
			if err != nil {
				return fieldError(opPrefix(index)+fieldNames[bit], err)
			}
			op.Type = 0 // unknown: Op.Validate names the valid types
			for _, t := range shard.Types {
				if t.String() == string(s) {
					op.Type = t
				}
			}
		case fieldQuantity, fieldTTL:
			v, err := r.int()
			if err == errOutOfRange || err == nil && v == 0 {
				v, err = presentInvalidInt, nil
			}
			if err != nil {
				return fieldError(opPrefix(index)+fieldNames[bit], err)
			}
			if bit == fieldQuantity {
				op.Quantity = v
			} else {
				op.TTLSeconds = v
			}
		case fieldExpectedVersion:
			v, err := r.int()
			if err == errOutOfRange || err == nil && v < 0 {
				v, err = presentInvalidVersion, nil
			}
			if err != nil {
				return fieldError(opPrefix(index)+fieldNames[bit], err)
			}
			op.ExpectedVersion = v
		default: // the string fields
			b, err := r.str()
			if err != nil {
				return fieldError(opPrefix(index)+fieldNames[bit], err)
			}
			s := string(b)
			switch bit {
			case fieldReservationID:
				if s == "" {
					s = presentInvalidID
				}
				op.ReservationID = s
			case fieldReason:
				op.Reason = s
			case fieldProductID:
				op.ProductID = s
			case fieldKey:
				op.IdempotencyKey = s
			}
		}
	}
}

// fieldHint explains the unknown fields that a single write takes elsewhere.
func fieldHint(name string, batch bool) string {
	if batch {
		return ""
	}
	switch name {
	case "product_id":
		return ": a single write takes the product from its path"
	case "idempotency_key":
		return ": a single write takes its key from the Idempotency-Key header"
	case "expected_version":
		return ": a single write takes its expected version from the If-Match header"
	}
	return ""
}

// opName names op index of a batch in error details ("ops[3]"), and a
// single write's op (index -1) by nothing. It is built only for an error:
// built for every op, it was one allocation per op of every batch.
func opName(index int) string {
	if index < 0 {
		return ""
	}
	return "ops[" + strconv.Itoa(index) + "]"
}

// opPrefix is opName ready for a field name: "ops[3].", or "".
func opPrefix(index int) string {
	if index < 0 {
		return ""
	}
	return opName(index) + "."
}

// decodeWrite reads the body of a single write into op.
func decodeWrite(r reader, op *shard.Op) *shard.Error {
	d := opDecoder{r: r}
	if err := d.decode(op, -1); err != nil {
		return err
	}
	if err := r.finish(); err != nil {
		return fieldError("", err)
	}
	return nil
}

// batchBody is a decoded batch request.
type batchBody struct {
	atomic bool
	ops    []shard.Op
}

// decodeBatch reads a batch body. actor applies to every op. More than
// shard.BatchRequestOpsMax ops answer payload_too_large as soon as the one
// past the limit starts.
func decodeBatch(r reader, actor string, b *batchBody) *shard.Error {
	if err := r.object(); err != nil {
		return fieldError("", err)
	}
	var seenAtomic, seenOps bool
	for {
		name, ok, err := r.key()
		if err != nil {
			return fieldError("", err)
		}
		if !ok {
			break
		}
		switch string(name) {
		case "atomic":
			if seenAtomic {
				return invalid(`duplicate field "atomic"`)
			}
			seenAtomic = true
			if b.atomic, err = r.bool(); err != nil {
				return fieldError("atomic", err)
			}
		case "ops":
			if seenOps {
				return invalid(`duplicate field "ops"`)
			}
			seenOps = true
			if err := decodeOps(r, actor, b); err != nil {
				return err
			}
		default:
			return invalid("unknown field " + strconv.Quote(string(name)))
		}
	}
	if !seenOps {
		return invalid(`field "ops" is required`)
	}
	if err := r.finish(); err != nil {
		return fieldError("", err)
	}
	return nil
}

func decodeOps(r reader, actor string, b *batchBody) *shard.Error {
	if err := r.array(); err != nil {
		return fieldError("ops", err)
	}
	d := opDecoder{r: r, batch: true}
	for i := 0; ; i++ {
		ok, err := r.elem()
		if err != nil {
			return fieldError("", err)
		}
		if !ok {
			return nil
		}
		if i == shard.BatchRequestOpsMax {
			return newError(codePayloadTooLarge, "a batch has at most "+strconv.Itoa(shard.BatchRequestOpsMax)+" ops")
		}
		b.ops = append(b.ops, shard.Op{ExpectedVersion: shard.NoVersion, Actor: actor})
		if err := d.decode(&b.ops[i], i); err != nil {
			err.OpIndex = i
			return err
		}
	}
}
