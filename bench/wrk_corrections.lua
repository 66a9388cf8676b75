-- wrk script: every request is an audited command, a correction of birth_year.
--
--   wrk -t T -c C -d D -s wrk_corrections.lua URL -- DATAFILE T
--
-- DATAFILE holds the bearer token on its first line, then one participant id a line (all at birth_year
-- 1970 and never corrected before). Thread t corrects only its own slice of the participants, round robin:
-- request k of a thread goes to participant (k mod n) of its slice, and in round r = k div n sets birth_year
-- to 1971, 1972, 1973, 1971, ... (r mod 3), so each correction is a real change (a no-op is refused with
-- 422), even when one request of a participant is skipped: wrk calls request() once more on thread 0 to
-- check the script, and a failed request must not make the next ones fail too. With n well above the
-- number of connections of a thread (the harness gives 1024 for 16), two requests in flight never touch
-- the same participant: that needs one request to last as long as n - 1 others (about 0.4 s at 2,400/s).
-- done() prints one line "BENCH_JSON {...}" with the figures and the status counts of all threads.

local threads = {}

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

local ids, first, count, headers
local counter = 0
local statuses = {}
first_error = ""
status_counts = ""

function init(args)
   local file = assert(io.open(args[1], "r"))
   local nthreads = tonumber(args[2])
   local token = file:read("*l")
   ids = {}
   for line in file:lines() do
      if #line > 0 then table.insert(ids, line) end
   end
   file:close()
   count = math.floor(#ids / nthreads)
   first = tid * count
   headers = {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. token,
   }
end

function request()
   local k = counter
   counter = counter + 1
   local id = ids[first + (k % count) + 1]
   local value = 1971 + math.floor(k / count) % 3
   local body = '{"field":"birth_year","new_value":' .. value .. ',"reason":"benchmark correction from source"}'
   return wrk.format("POST", "/participants/" .. id .. "/corrections", headers, body)
end

function response(status, hdrs, body)
   statuses[status] = (statuses[status] or 0) + 1
   if (status < 200 or status > 299) and first_error == "" then
      first_error = status .. " " .. string.sub(body or "", 1, 300)
   end
   local parts = {}
   for s, n in pairs(statuses) do table.insert(parts, s .. ":" .. n) end
   status_counts = table.concat(parts, ",")
end

local function q(s)
   return '"' .. string.gsub(s, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end) .. '"'
end

function done(summary, latency, requests)
   local merged, errs = {}, {}
   for _, t in ipairs(threads) do
      local sc = t:get("status_counts") or ""
      for s, n in string.gmatch(sc, "(%d+):(%d+)") do
         merged[s] = (merged[s] or 0) + tonumber(n)
      end
      local fe = t:get("first_error") or ""
      if fe ~= "" then table.insert(errs, q(fe)) end
   end
   local st = {}
   for s, n in pairs(merged) do table.insert(st, q(s) .. ":" .. n) end
   local e = summary.errors
   io.write("BENCH_JSON {",
      '"requests":', summary.requests, ",",
      '"duration_us":', summary.duration, ",",
      '"bytes":', summary.bytes, ",",
      '"errors":{"connect":', e.connect, ',"read":', e.read, ',"write":', e.write,
      ',"status":', e.status, ',"timeout":', e.timeout, "},",
      '"latency_us":{"p50":', latency:percentile(50), ',"p90":', latency:percentile(90),
      ',"p99":', latency:percentile(99), ',"p999":', latency:percentile(99.9),
      ',"mean":', latency.mean, ',"max":', latency.max, "},",
      '"statuses":{', table.concat(st, ","), "},",
      '"first_errors":[', table.concat(errs, ","), "]",
      "}\n")
end
