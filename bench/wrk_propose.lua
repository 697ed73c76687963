-- wrk script: POST proposals, each with its own Idempotency-Key.
--   wrk -t1 -c16 -d10s -s bench/wrk_propose.lua URL -- BODIES_FILE TOKEN RUN_PREFIX
-- BODIES_FILE holds one JSON body per line; they are sent in turn, with @@N@@ replaced by the
-- request's own Idempotency-Key (bench/workload.py EACH: each proposal its own effect).
local next_id = 1

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
end

function init(args)
  bodies = {}
  for line in io.lines(args[1]) do
    if #line > 0 then bodies[#bodies + 1] = line end
  end
  headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. args[2]}
  prefix = args[3] .. "-" .. thread_id .. "-"
  sent = 0
end

function request()
  sent = sent + 1
  local key = prefix .. sent
  headers["Idempotency-Key"] = key
  local body = string.gsub(bodies[(sent % #bodies) + 1], "@@N@@", key)
  return wrk.format("POST", nil, headers, body)
end
