-- Shared by every script: times each request itself and prints one line at the end,
--   BENCH {"requests": ..., "p50_us": ..., "ok": ..., "misses": ...}
--
-- The latency is measured here, from request() to response(), with CLOCK_MONOTONIC,
-- and not taken from wrk's own statistics: on the machine these benchmarks were
-- written on, wrk's built-in latencies (Debian's wrk 4.1.0) came out several times
-- longer than connections / throughput allows (Little's law), while these agree with
-- it. Pairing request() with response() needs one connection per wrk thread, so the
-- harness always runs wrk with -t equal to -c.
local ffi = require("ffi")
ffi.cdef([[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock_id, bench_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local ts = ffi.new("bench_timespec")

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end

local M = {}
local threads = {}
local started = nil

-- Per thread (each wrk thread has a Lua state of its own); read back in done().
lat = {}
ok, misses, counted = 0, 0, 0

function M.setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function M.start()
  started = now_us()
end

function M.stop(status, headers)
  if started ~= nil then
    lat[#lat + 1] = now_us() - started
    started = nil
  end
  counted = counted + 1
  if status == 200 then
    ok = ok + 1
  end
  if headers["X-Cache"] == "MISS" or headers["x-cache"] == "MISS" then
    misses = misses + 1
  end
end

local function pct(sorted, p)
  if #sorted == 0 then
    return 0
  end
  local i = math.max(1, math.min(#sorted, math.ceil(#sorted * p / 100)))
  return sorted[i]
end

function M.done(summary, latency, requests)
  local all, sum = {}, 0
  local totals = { ok = 0, misses = 0, counted = 0 }
  for _, t in ipairs(threads) do
    for _, v in ipairs(t:get("lat") or {}) do
      all[#all + 1] = v
      sum = sum + v
    end
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + (t:get(name) or 0)
    end
  end
  table.sort(all)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"bytes":%d,"timed":%d,"p50_us":%.1f,"p90_us":%.1f,'
      .. '"p99_us":%.1f,"max_us":%.1f,"mean_us":%.1f,"wrk_p50_us":%.1f,"wrk_p99_us":%.1f,"wrk_mean_us":%.1f,'
      .. '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,'
      .. '"counted":%d,"ok":%d,"misses":%d}\n',
    summary.requests, summary.duration, summary.bytes, #all,
    pct(all, 50), pct(all, 90), pct(all, 99), all[#all] or 0, #all > 0 and sum / #all or 0,
    latency:percentile(50), latency:percentile(99), latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout,
    totals.counted, totals.ok, totals.misses))
end

return M
