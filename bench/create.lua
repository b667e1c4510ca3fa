-- wrk script: POST /v1/predictions with a small input, counting answers that are not 201.
-- The token comes from the COGWHEEL_TOKEN environment variable.
wrk.method = "POST"
wrk.path = "/v1/predictions"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("COGWHEEL_TOKEN")
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"version":"5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa","input":{"prompt":"bench"}}'

local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) not_created = 0 end
function response(status, headers, body)
  if status ~= 201 then not_created = not_created + 1 end
end
function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + t:get("not_created") end
  io.write(string.format("NOT_CREATED %d\n", bad))
end
