-- wrk script of the benchmarks.
--
-- With WRK_DELAY_MS set, each connection waits that long after every
-- response before sending its next request: a paced load of about
-- connections × 1000 / (latency + delay) requests per second.
--
-- At the end it prints one machine-readable line with the counts and the
-- latency percentiles (microseconds) the benchmark driver needs.
local pace = tonumber(os.getenv("WRK_DELAY_MS") or "")
if pace then
  delay = function() return pace end
end

done = function(summary, latency, requests)
  io.write(string.format(
    "WRK_JSON {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d," ..
    "\"errors\":%d,\"non2xx\":%d,\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d," ..
    "\"mean_us\":%.1f,\"max_us\":%d}\n",
    summary.requests, summary.duration, summary.bytes,
    summary.errors.connect + summary.errors.read + summary.errors.write +
      summary.errors.timeout,
    summary.errors.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
