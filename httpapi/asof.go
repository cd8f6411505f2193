package httpapi

import (
	"net/url"
	"strconv"

	"github.com/inventory-ledger/inventory/shard"
)

// stockQuery parses the query of GET /v1/products/{product_id}: nothing, or
// as_of once, a time as shard.ParseTime takes it. It returns the time in
// Unix nanoseconds and whether as_of was given.
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
		t, ok := shard.ParseTime(v)
		if !ok {
			return invalid("as_of must be an RFC 3339 time such as 2026-12-02T10:00:00Z, got " + strconv.Quote(v))
		}
		asOf, seen = t, true
		return nil
	})
	return asOf, seen, err
}

var stockParams = []string{"as_of"}
