-- PUT with a new name every time: nanocdn and the nginx WebDAV reference both
-- refuse (409) a name that exists, and the benchmark measures creating files.
-- BENCH_PUT_PREFIX: URL prefix, e.g. /upload/pub/bench/run-1 or /dav/run-1
-- BENCH_BODY_BYTES: body size (default 4096)
-- Names: <prefix>/t<thread>/<n div 1000>/<n>.bin, so no folder grows past
-- 1000 entries and new folders keep appearing, as with real uploads.

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

wrk.method = "PUT"

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local prefix, body
local n = 0

function init(args)
  prefix = os.getenv("BENCH_PUT_PREFIX") or "/upload/pub/bench"
  body = string.rep("b", tonumber(os.getenv("BENCH_BODY_BYTES") or "4096"))
end

function request()
  n = n + 1
  local path = string.format("%s/t%d/%d/%d.bin", prefix, tid, math.floor(n / 1000), n)
  return wrk.format("PUT", path, nil, body)
end
