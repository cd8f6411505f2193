-- wrk script: RESERVE 1 unit of one hot product, a unique idempotency key and hold per request.
-- setup() runs in the main state; each thread's state gets its own `tid` global from it.
-- The same as the shared peers/wrk-reserve.lua, plus: when INVENTORY_TOKEN is set, every
-- request carries "Authorization: Bearer $INVENTORY_TOKEN" (see authcost.sh).
local token = os.getenv("INVENTORY_TOKEN")
local counter = 0
local nthreads = 0
local threads = {}
function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
  table.insert(threads, thread)
end
function init(args)
  counter = 0
  prefix = "t" .. tid .. "-" .. tostring(os.time())
  created, non2xx = 0, 0
end
function request()
  counter = counter + 1
  local id = prefix .. "-" .. counter
  local body = '{"type":"RESERVE","quantity":1,"reservation_id":"' .. id .. '","ttl_seconds":3600,"reason":"flash"}'
  local headers = {["Content-Type"] = "application/json", ["Idempotency-Key"] = id}
  if token and token ~= "" then headers["Authorization"] = "Bearer " .. token end
  return wrk.format("POST", "/v1/products/hot/transactions", headers, body)
end
function response(status, headers, body)
  if status == 201 then created = created + 1 else non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local c, n = 0, 0
  for _, t in ipairs(threads) do c = c + t:get("created"); n = n + t:get("non2xx") end
  io.write(string.format("CREATED %d NON201 %d\n", c, n))
  io.write(string.format("LAT p50_ms %.3f p99_ms %.3f\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
