// Runs a tsched control plane in its own process (so that it gets a core of its own), forked by
// systems/tsched.mjs. `sqlite DIR` starts the embedded server on a fresh data dir without a local worker;
// `pg URL` starts a cluster replica on PostgreSQL. Says `ready` with its URL and tokens over IPC and
// closes on `stop`.

import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { percentile } from '../lib/stats.mjs';

const [mode, where] = process.argv.slice(2);
// TSCHED_BENCH_STATS=1 also counts HTTP requests by route (ids folded), printed at stop, and times the
// worker polls that carry results (a drain's cycle): how long the server held each (arrival to response
// written) and the gap before the next one arrived (the worker's turn and the network), both at stop.
const requests = new Map();
const cycles = [];
if (process.env.TSCHED_BENCH_STATS) {
  const http = await import('node:http');
  const emit = http.Server.prototype.emit;
  http.Server.prototype.emit = function (event, req, ...rest) {
    if (event === 'request') {
      const key = `${req.method} ${req.url.replace(/\?.*/, '').replace(/\/[0-9a-f-]{8,}|\/\d+/g, '/:id')}`;
      requests.set(key, (requests.get(key) ?? 0) + 1);
      if (key.endsWith('/poll')) {
        // A poll carried results if its answer acks some (a bare poll's answer has no "results"; a heartbeat
        // poll's body can be as big as a report's, so the request's size does not tell).
        const at = performance.now();
        const res = rest[0];
        const end = res.end;
        res.end = function (chunk, ...more) {
          if (chunk !== undefined && typeof chunk !== 'function' && String(chunk).includes('"results":[{'))
            res.once('finish', () => cycles.push([at, performance.now()]));
          return end.call(this, chunk, ...more);
        };
      }
    }
    return emit.call(this, event, req, ...rest);
  };
}
/** "p50 / mean" of a list of ms. */
const summary = (xs) => `${percentile(xs, 50).toFixed(2)} / ${(xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(2)} ms`;
const log = pino({ level: process.env.TSCHED_LOG_LEVEL ?? 'warn' }, pino.destination({ dest: 2, sync: false }));
let server;
if (mode === 'sqlite') {
  const { startEmbedded } = await import('../../dist/server/embedded.js');
  server = await startEmbedded({ dataDir: where, host: '127.0.0.1', port: 0, localWorker: false, log });
} else if (mode === 'pg') {
  const { startServer } = await import('../../dist/server/cluster.js');
  const token = randomBytes(24).toString('hex');
  const workerToken = randomBytes(24).toString('hex');
  server = await startServer({ db: where, host: '127.0.0.1', port: 0, adminToken: token, workerToken, log });
} else {
  throw new Error(`mode: expected sqlite or pg, got ${mode}`);
}

// TSCHED_BENCH_PROFILE=/tmp/server.cpuprofile: profile the server while it serves (open it in Chrome
// DevTools or speedscope).
let profiler;
if (process.env.TSCHED_BENCH_PROFILE) {
  const { Session } = await import('node:inspector/promises');
  profiler = new Session();
  profiler.connect();
  await profiler.post('Profiler.enable');
  // V8 samples every 1 ms by default: coarse beside a request that takes a fraction of that.
  // TSCHED_BENCH_PROFILE_US sets the interval (µs).
  await profiler.post('Profiler.setSamplingInterval', { interval: Number(process.env.TSCHED_BENCH_PROFILE_US ?? 200) });
  await profiler.post('Profiler.start');
}

// TSCHED_BENCH_STATS=1: count every SQL statement and its time, printed at stop.
if (process.env.TSCHED_BENCH_STATS) (await import('../../dist/store/backend.js')).countStatements(true);

process.on('message', async (msg) => {
  if (msg?.type !== 'stop') return;
  if (profiler) {
    const { profile } = await profiler.post('Profiler.stop');
    (await import('node:fs')).writeFileSync(process.env.TSCHED_BENCH_PROFILE, JSON.stringify(profile));
  }
  if (process.env.TSCHED_BENCH_STATS) {
    const { SqliteBackend, statementStats } = await import('../../dist/store/backend.js');
    const { PgGroupCommit } = await import('../../dist/store/pg-group-commit.js');
    const cpu = process.cpuUsage();
    const stats = mode === 'sqlite' ? SqliteBackend.stats : PgGroupCommit.stats;
    const rss = process.memoryUsage().rss / 2 ** 20;
    console.error('backend stats', stats, `server cpu ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms, rss ${rss.toFixed(0)} MiB`);
    const rows = [...(statementStats ?? new Map())].sort((a, b) => b[1].ms - a[1].ms);
    for (const [sql, e] of rows) console.error(`${String(e.n).padStart(8)} ${e.ms.toFixed(0).padStart(6)} ms  ${sql}`);
    for (const [route, n] of [...requests].sort((a, b) => b[1] - a[1])) console.error(`${String(n).padStart(8)} requests  ${route}`);
    if (cycles.length > 1) {
      cycles.sort((a, b) => a[0] - b[0]);
      const held = cycles.map(([at, done]) => done - at);
      const gaps = cycles.slice(1).map(([at], i) => at - cycles[i][1]);
      console.error(`polls with results: ${cycles.length}, held p50 / mean ${summary(held)}, gap before the next ${summary(gaps)}`);
    }
  }
  await server.close();
  process.send({ type: 'stopped' }, () => process.exit(0));
});
process.send({ type: 'ready', url: server.url, token: server.token, workerToken: server.workerToken });
