-- Many distinct URLs, each asked for once (until the set runs out), spread over wrk's
-- threads without overlap, in a scrambled order. Counts answers with status 200 (`ok`)
-- and with X-Cache: MISS (`misses`: shield made a new variant for it).
--
-- Arguments: template photos wmin wmax qmin qmax threads [offset]
--   template  the path, with {p} (photo), {w} (width) and {q} (quality) filled in, e.g.
--             "/bench/{p}?w={w}&q={q}&fmt=webp" or "/unsafe/{w}x0/filters:quality({q})/{p}"
--   photos    comma-separated file names
--   threads   wrk's -t, so the threads split the URLs between them
--   offset    where in the scrambled order to start (0), so runs can use disjoint URLs
-- URL number k (0 .. n-1, n = widths x photos x qualities) is k' = k * 7919 mod n, split
-- into width, photo and quality; thread t asks for k = offset + t, then + threads, ...
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local report = require("report")

wrk.headers["Accept"] = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
wrk.headers["User-Agent"] = "shield-bench"

local template, photos, wmin, nw, qmin, nq, step, n, offset
local k = nil

function init(args)
  template = args[1]
  photos = {}
  for p in string.gmatch(args[2], "[^,]+") do
    table.insert(photos, p)
  end
  wmin = tonumber(args[3])
  nw = tonumber(args[4]) - wmin + 1
  qmin = tonumber(args[5])
  nq = tonumber(args[6]) - qmin + 1
  step = tonumber(args[7])
  offset = tonumber(args[8] or "0") or 0
  n = nw * #photos * nq
end

function request()
  if k == nil then
    k = offset + (tid or 0)
  end
  local i = (k * 7919) % n
  k = k + step
  local w = wmin + i % nw
  local rest = math.floor(i / nw)
  local p = photos[rest % #photos + 1]
  local q = qmin + math.floor(rest / #photos) % nq
  local path = template:gsub("{p}", p):gsub("{w}", tostring(w)):gsub("{q}", tostring(q))
  report.start()
  return wrk.format("GET", path)
end

function response(status, headers, body)
  report.stop(status, headers)
end

setup = report.setup
done = report.done
