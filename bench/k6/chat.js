// Non-streaming chat completions against one OpenAI-compatible target.
//
// Open loop (default): constant-arrival-rate at RATE requests/s for DURATION; a request that
// finds no free VU is dropped by k6 and counted as `dropped_iterations`.
// Closed loop: VUS > 0 runs that many VUs back to back (constant-vus) for DURATION.
//
// Env: TARGET_URL (base URL ending in /v1), MODEL, KEY, RATE, DURATION, VUS, TIMEOUT,
//      PRE_VUS / MAX_VUS (open loop; default sized from RATE and TIMEOUT), MAX_TOKENS,
//      HEADERS (a JSON object of extra request headers: Portkey's routing headers).
//
// Metrics written per request, tagged outcome=ok|http_<status>|timeout|net_<code>|bad_body:
//   svc_latency   = http_req_duration (sending + waiting + receiving; excludes k6-side queueing)
//   sched_latency = response end - the request's scheduled send time (open loop only): the
//                   scheduled time is test start + iterationInTest / RATE, so a request that
//                   k6 starts late (no VU free, GC, a busy CPU) is charged for the wait.
//   reported_overhead = what the gateway says it added, from its own response header
//                   (Sluice x-sluice-overhead-ms, LiteLLM x-litellm-overhead-duration-ms), when sent
//   start_lag     = iteration start - scheduled time (open loop only). Times come from
//                   exec.instance.currentTestRunDuration (a float, ms since the run began); the
//                   scenario itself starts a little after the run (no setup() here, so well under
//                   a millisecond or two), and bench/harness.py subtracts the run's smallest start_lag
//                   from sched_latency to remove that constant offset.
import http from 'k6/http';
import exec from 'k6/execution';
import { Trend } from 'k6/metrics';

const TARGET = __ENV.TARGET_URL;
const MODEL = __ENV.MODEL || 'mock-small';
const KEY = __ENV.KEY || 'x';
const RATE = Number(__ENV.RATE || 50);
const DURATION = __ENV.DURATION || '20s';
const VUS = Number(__ENV.VUS || 0);
const TIMEOUT = __ENV.TIMEOUT || '10s';
const TIMEOUT_S = parseFloat(TIMEOUT);
// One second's worth of requests in flight is ready at start; more VUs are made as needed.
const PRE_VUS = Number(__ENV.PRE_VUS || Math.max(20, Math.ceil(RATE)));
const MAX_VUS = Number(__ENV.MAX_VUS || Math.min(4000, Math.max(PRE_VUS, Math.ceil(RATE * TIMEOUT_S))));
const MAX_TOKENS = Number(__ENV.MAX_TOKENS || 32);

if (!TARGET) {
  throw new Error('TARGET_URL is required');
}

const svcLatency = new Trend('svc_latency', true);
const schedLatency = new Trend('sched_latency', true);
const startLag = new Trend('start_lag', true);
const reportedOverhead = new Trend('reported_overhead', true);

export const options = {
  discardResponseBodies: false,
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'max'],
  scenarios: VUS > 0
    ? { closed: { executor: 'constant-vus', vus: VUS, duration: DURATION } }
    : {
        open: {
          executor: 'constant-arrival-rate',
          rate: RATE,
          timeUnit: '1s',
          duration: DURATION,
          preAllocatedVUs: PRE_VUS,
          maxVUs: MAX_VUS,
        },
      },
};

const URL = `${TARGET}/chat/completions`;
const BODY = JSON.stringify({
  model: MODEL,
  messages: [{ role: 'user', content: 'Hello there' }],
  max_tokens: MAX_TOKENS,
});
const PARAMS = {
  headers: Object.assign({ 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}` },
    JSON.parse(__ENV.HEADERS || '{}')),
  timeout: TIMEOUT,
  tags: { name: 'chat' },
};

function clean(text) {
  return String(text || '').replace(/[&=,\n"]/g, ' ').slice(0, 80);
}

function outcomeOf(res) {
  if (res.error_code === 1050) {
    return ['timeout', ''];
  }
  if (res.status === 0) {
    return [`net_${res.error_code}`, clean(res.error)];
  }
  if (res.status !== 200) {
    return [`http_${res.status}`, ''];
  }
  const body = res.body || '';
  if (body.indexOf('"choices"') < 0 || body.indexOf('"content"') < 0) {
    return ['bad_body', ''];
  }
  return ['ok', ''];
}

export default function () {
  const due = (exec.scenario.iterationInTest * 1000) / RATE;
  if (VUS === 0) {
    startLag.add(exec.instance.currentTestRunDuration - due);
  }
  const res = http.post(URL, BODY, PARAMS);
  const [outcome, err] = outcomeOf(res);
  const tags = err ? { outcome, err } : { outcome };
  svcLatency.add(res.timings.duration, tags);
  const reported = res.headers['X-Sluice-Overhead-Ms'] || res.headers['X-Litellm-Overhead-Duration-Ms'];
  if (outcome === 'ok' && reported !== undefined) {
    reportedOverhead.add(parseFloat(reported));
  }
  if (VUS === 0) {
    schedLatency.add(exec.instance.currentTestRunDuration - due, tags);
  }
}
