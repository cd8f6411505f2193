package httpapi

import (
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/inventory-ledger/inventory/shard"
)

// stockQuery parses the query of GET /v1/products/{product_id}: nothing, or
// as_of once, an RFC 3339 time (any offset, any number of fractional
// digits up to nine). It returns the time in Unix nanoseconds, clamped to
// the range they can hold (before 1678 no entry exists; after 2262 every
// entry does), and whether as_of was given.
//
// The value is percent-decoded without turning '+' into a space: a time
// holds no space, and "+01:00" written unescaped in a URL is what clients
// most often send for a positive offset.
func stockQuery(raw string) (int64, bool, *shard.Error) {
	var asOf int64
	seen := false
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, err := url.QueryUnescape(k)
		if err != nil {
			return 0, false, invalid("malformed query string")
		}
		if k != "as_of" {
			return 0, false, invalid("unknown query parameter " + strconv.Quote(k) + "; this endpoint takes only as_of")
		}
		if seen {
			return 0, false, invalid("query parameter \"as_of\" is repeated")
		}
		seen = true
		if v, err = url.PathUnescape(v); err != nil {
			return 0, false, invalid("malformed query string")
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil || v == "" {
			return 0, false, invalid("as_of must be an RFC 3339 time such as 2026-12-02T10:00:00Z, got " + strconv.Quote(v))
		}
		asOf = unixNanoClamped(t)
	}
	return asOf, seen, nil
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

// stockAsOf answers GET /v1/products/{product_id}?as_of=: the stock right
// after the product's last entry created at or before that time (see
// shard.Engine.StockAsOf), with that entry's version as ETag.
func (s *server) stockAsOf(c echo.Context, t int64) error {
	st, err := s.engine.StockAsOf(c.Request().Context(), pathID(c.Param("product_id")), t)
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h["Etag"] = etag(st.Version)
	h["Vary"] = hdrVary
	return s.reply(c, http.StatusOK, func(w encoder) { encodeStock(w, &st) })
}
