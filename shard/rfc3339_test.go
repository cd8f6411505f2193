package shard

import (
	"math"
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	base := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC).UnixNano()
	for _, c := range []struct {
		v    string
		want int64
		ok   bool
	}{
		{"2026-12-02T10:00:00Z", base, true},
		{"2026-12-02T10:00:00.5Z", base + 5e8, true},
		{"2026-12-02T10:00:00.1234567899Z", base + 123456789, true}, // the tenth digit dropped
		{"2026-12-03T09:59:00+23:59", base, true},
		{"2026-12-01T10:01:00-23:59", base, true},
		{"2026-12-02T10:00:00-00:00", base, true},
		{"1600-01-01T00:00:00Z", math.MinInt64, true},
		{"9999-12-31T23:59:59Z", math.MaxInt64, true},
		{"2026-12-02T10:00:00+24:00", 0, false},
		{"2026-12-02T10:00:00+00:60", 0, false},
		{"2026-12-02T10:00:00-23:60", 0, false},
		{"2026-12-02t10:00:00z", 0, false},
		{"2026-12-02T10:00:00", 0, false},
		{"2026-12-02", 0, false},
		{"", 0, false},
	} {
		got, ok := ParseTime(c.v)
		if ok != c.ok || got != c.want {
			t.Errorf("ParseTime(%q) = %d, %v; want %d, %v", c.v, got, ok, c.want, c.ok)
		}
	}
}
