-- wrk script of the API benchmark (scripts/bench-api.sh).
--
-- Environment:
--   FLOTILLA_TOKEN   bearer token sent with every request
--   WRK_RATE         requests/s wanted over all connections; 0 = as fast as possible.
--                    Debian's wrk has no rate option (wrk2 is not packaged): each
--                    connection waits WRK_CONNECTIONS / WRK_RATE seconds less
--                    WRK_LATENCY_MS (about the latency of a request) after a response before its next
--                    request; wrk's "Requests/sec" tells the rate reached. The latency is
--                    measured closed-loop (a slow answer delays the next request).
--   WRK_CONNECTIONS  the -c value (needed for the pacing)
--   WRK_LATENCY_MS   the latency the pacing subtracts from each pause (default 1)
--   WRK_NAMES        if set to N: GET <url>/<WRK_PREFIX><random 0..N-1, 6 digits>
--   WRK_PREFIX       name prefix (default "seed-")
--   WRK_CONTINUE     if set to N: list pages starting after a random one of the first N
--                    names (`&continue=` token of "default/<WRK_PREFIX><6 digits>"), so
--                    that each request reads and renders a different page

local token = os.getenv("FLOTILLA_TOKEN") or ""
local rate = tonumber(os.getenv("WRK_RATE") or "0")
local connections = tonumber(os.getenv("WRK_CONNECTIONS") or "1")
local names = tonumber(os.getenv("WRK_NAMES") or "0")
local prefix = os.getenv("WRK_PREFIX") or "seed-"
local continues = tonumber(os.getenv("WRK_CONTINUE") or "0")
local latency = tonumber(os.getenv("WRK_LATENCY_MS") or "1")
local pause = 0
if rate > 0 then
  pause = math.max(0, math.floor(1000 * connections / rate) - latency)
end

wrk.headers["Authorization"] = "Bearer " .. token

local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

function init(args)
  math.randomseed(os.time() + (seed or 0) * 7919)
end

function delay()
  return pause
end

local function hex(text)
  return (text:gsub(".", function(c) return string.format("%02x", string.byte(c)) end))
end

function request()
  if continues > 0 then
    local after = string.format("default/%s%06d", prefix, math.random(0, continues - 1))
    return wrk.format("GET", wrk.path .. "&continue=" .. hex(after))
  end
  if names > 0 then
    local path = string.format("%s/%s%06d", wrk.path, prefix, math.random(0, names - 1))
    return wrk.format("GET", path)
  end
  return wrk.format("GET")
end
-- No response() hook: it would copy every body (the runs list is tens of MB) into Lua.
-- wrk reports non-2xx answers itself ("Non-2xx or 3xx responses").
