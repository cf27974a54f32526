-- Shared by every wrk run of the benchmark: the request method comes from
-- BENCH_METHOD (wrk has no flag for it), and done() prints one JSON line
-- that bench/wrk.ts parses, so nothing depends on wrk's human output.

wrk.method = os.getenv("BENCH_METHOD") or wrk.method

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
