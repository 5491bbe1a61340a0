-- hit.lua at a steady offered load: each connection pauses before every request.
-- Argument: the pause in ms (at most connections x 1000 / pause requests a second).
-- Used to read latency when the probe itself does not saturate the server.
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
require("hit")

local pause = 10

function init(args)
  pause = tonumber(args[1] or "10") or 10
end

function delay()
  return pause
end
