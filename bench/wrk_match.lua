-- wrk cross-check of server_bench's closed loop: POST /v1/match with the
-- same {"pdq": "<hex>"} bodies, over keep-alive HTTPS.
--
--   build/bin/server_bench --serve-only 90 > /tmp/serve.txt &   # prints port=, key=, queries=
--   # once it has printed them:
--   BANTAY_KEY=<key> BANTAY_QUERIES=<queries file> \
--     wrk -t1 -c32 -d20s --latency -s bench/wrk_match.lua https://127.0.0.1:<port>/v1/match
--
-- Every request is formatted once, in init (formatting per request would
-- cost wrk's thread more than the send). wrk does not check certificates;
-- it counts answers other than 2xx/3xx as "Non-2xx or 3xx responses".

local requests = {}
local count = 0
local next_index = 0

function init(args)
  local key = os.getenv("BANTAY_KEY")
  local path = os.getenv("BANTAY_QUERIES")
  if key == nil or path == nil then
    error("set BANTAY_KEY and BANTAY_QUERIES (see the top of wrk_match.lua)")
  end
  local headers = {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
  }
  for body in io.lines(path) do
    count = count + 1
    requests[count] = wrk.format("POST", "/v1/match", headers, body)
  end
end

function request()
  next_index = next_index % count + 1
  return requests[next_index]
end
