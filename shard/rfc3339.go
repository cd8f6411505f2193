package shard

import (
	"math"
	"time"
)

// ParseTime parses an RFC 3339 time as the API's as_of and the ledger
// tools take it: an upper-case T and Z, any offset from -23:59 to +23:59
// (time.Parse alone takes "+24:00" and "+00:60"), any number of fractional
// digits (past the ninth they are dropped). It returns Unix nanoseconds,
// clamped to the range they can hold: before 1678 no entry exists, after
// 2262 every entry does.
func ParseTime(v string) (int64, bool) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil || !offsetInRange(v) {
		return 0, false
	}
	switch {
	case t.Before(nanoTimeMin):
		return math.MinInt64, true
	case t.After(nanoTimeMax):
		return math.MaxInt64, true
	}
	return t.UnixNano(), true
}

// Bounds of the times Unix nanoseconds in an int64 can hold.
var (
	nanoTimeMin = time.Unix(0, math.MinInt64)
	nanoTimeMax = time.Unix(0, math.MaxInt64)
)

// offsetInRange reports whether the numeric offset ending v, if any, has
// hours 00-23 and minutes 00-59, as RFC 3339 requires.
func offsetInRange(v string) bool {
	if len(v) < 6 || (v[len(v)-6] != '+' && v[len(v)-6] != '-') {
		return true // "Z", or not an offset: time.Parse judged it
	}
	off := v[len(v)-5:] // hh:mm
	return off[:2] <= "23" && off[3:] <= "59"
}
