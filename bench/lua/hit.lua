-- One URL again and again, as fast as the connection allows: the cache-hit path
-- (the URL is wrk's own).
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local report = require("report")

wrk.headers["Accept"] = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
wrk.headers["User-Agent"] = "shield-bench"

local req = nil

function request()
  if req == nil then
    req = wrk.format()
  end
  report.start()
  return req
end

function response(status, headers, body)
  report.stop(status, headers)
end

setup = report.setup
done = report.done
