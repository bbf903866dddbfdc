-- wrk script for the signing benchmark (bench/run.py drives it; see bench/README.md).
--
-- Usage: wrk ... -s bench/wrk/sign.lua URL -- REQUESTS_FILE [SERIAL_PREFIX]
--
-- REQUESTS_FILE holds one request per line: "PATH<TAB>HEADER: VALUE<TAB>...<TAB>BODY", written
-- by bench/load.py (a fresh public key per line, tokens rotated). Each thread starts at its own
-- offset and formats every request once in init(), so request() only indexes a table: the
-- generator spends its CPU on HTTP, not on Lua string building.
--
-- response() counts answers by status class; with SERIAL_PREFIX it appends the "serial" of
-- every 201 body to SERIAL_PREFIX.<thread id> (one decimal per line), so the run can check that
-- each certificate a client received has its audit record. done() prints one line
-- "BENCH-RESULT {json}" that bench/load.py parses: counts, duration, latency percentiles.

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

local requests = {}
local index = 0
local serial_file = nil
ok2xx, created, non2xx, status4xx, status5xx, serials = 0, 0, 0, 0, 0, 0

local function split(line)
  local fields = {}
  for field in string.gmatch(line, "[^\t]+") do
    table.insert(fields, field)
  end
  return fields
end

function init(args)
  local path, prefix = args[1], args[2]
  for line in io.lines(path) do
    local fields = split(line)
    local headers = {}
    for i = 2, #fields - 1 do
      local name, value = string.match(fields[i], "^([^:]+): (.*)$")
      headers[name] = value
    end
    table.insert(requests, wrk.format("POST", fields[1], headers, fields[#fields]))
  end
  -- Threads start apart so two threads never send the same key at the same moment.
  index = ((id - 1) * math.floor(#requests / 2)) % #requests
  if prefix ~= nil and prefix ~= "" then
    serial_file = assert(io.open(prefix .. "." .. id, "w"))
    serial_file:setvbuf("full")
  end
end

function request()
  index = index % #requests + 1
  return requests[index]
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok2xx = ok2xx + 1
    if status == 201 then
      created = created + 1
      if serial_file ~= nil then
        local serial = string.match(body, '"serial":%s*(%d+)')
        if serial ~= nil then
          serial_file:write(serial, "\n")
          serials = serials + 1
          if serials % 256 == 0 then
            serial_file:flush()
          end
        end
      end
    end
  else
    non2xx = non2xx + 1
    if status >= 500 then
      status5xx = status5xx + 1
    elseif status >= 400 then
      status4xx = status4xx + 1
    end
  end
end

function done(summary, latency, requests_)
  local totals = {ok2xx = 0, created = 0, non2xx = 0, status4xx = 0, status5xx = 0, serials = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + thread:get(name)
    end
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"requests": %d, "duration_us": %d, "ok2xx": %d, "created": %d, ' ..
    '"non2xx": %d, "status4xx": %d, "status5xx": %d, "serials": %d, ' ..
    '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, totals.ok2xx, totals.created, totals.non2xx,
    totals.status4xx, totals.status5xx, totals.serials,
    errors.connect, errors.read, errors.write, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
