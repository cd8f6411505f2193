package httpapi

import (
	"math"
	"net/url"
	"strconv"
	"time"

	"github.com/inventory-ledger/inventory/shard"
)

// stockQuery parses the query of GET /v1/products/{product_id}: nothing, or
// as_of once, an RFC 3339 time (any offset, any number of fractional
// digits; past the ninth they are dropped). It returns the time in Unix nanoseconds, clamped to
// the range they can hold (before 1678 no entry exists; after 2262 every
// entry does), and whether as_of was given.
//
// The value is percent-decoded without turning '+' into a space: a time
// holds no space, and "+01:00" written unescaped in a URL is what clients
// most often send for a positive offset.
func stockQuery(raw string) (int64, bool, *shard.Error) {
	var asOf int64
	seen := false
	err := queryParams(raw, stockParams, "; this endpoint takes only as_of", func(_ int, v string) *shard.Error {
		v, err := url.PathUnescape(v)
		if err != nil {
			return invalid("malformed query string")
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil || v == "" || !offsetInRange(v) {
			return invalid("as_of must be an RFC 3339 time such as 2026-12-02T10:00:00Z, got " + strconv.Quote(v))
		}
		asOf, seen = unixNanoClamped(t), true
		return nil
	})
	return asOf, seen, err
}

var stockParams = []string{"as_of"}

// offsetInRange reports whether the numeric offset ending v, if any, has
// hours 00-23 and minutes 00-59, as RFC 3339 requires; time.Parse takes
// "+24:00" and "+00:60".
func offsetInRange(v string) bool {
	if len(v) < 6 || (v[len(v)-6] != '+' && v[len(v)-6] != '-') {
		return true // "Z", or not an offset: time.Parse judged it
	}
	off := v[len(v)-5:] // hh:mm
	return off[:2] <= "23" && off[3:] <= "59"
}

// Bounds of the times Unix nanoseconds in an int64 can hold.
var (
	nanoTimeMin = time.Unix(0, math.MinInt64)
	nanoTimeMax = time.Unix(0, math.MaxInt64)
)

func unixNanoClamped(t time.Time) int64 {
	switch {
	case t.Before(nanoTimeMin):
		return math.MinInt64
	case t.After(nanoTimeMax):
		return math.MaxInt64
	}
	return t.UnixNano()
}
