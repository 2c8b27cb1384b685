// One measurement in a fresh process: reset the system's state, run one suite against it, write the
// result as JSON to --out. run.mjs starts one of these per (suite, system, run), so that no state, JIT
// warmth or leaked handle carries over from one system to the next.

import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { runExec } from './suites/exec.mjs';
import { runLatency } from './suites/latency.mjs';
import { runThroughput } from './suites/throughput.mjs';

const { values } = parseArgs({
  options: { suite: { type: 'string' }, system: { type: 'string' }, opts: { type: 'string', default: '{}' }, out: { type: 'string' } },
});
const SUITES = { throughput: runThroughput, exec: runExec, latency: runLatency };
const suite = SUITES[values.suite];
if (!suite) throw new Error(`--suite: expected one of ${Object.keys(SUITES).join(', ')}, got ${values.suite}`);
const system = await import(`./systems/${values.system}.mjs`);
const opts = JSON.parse(values.opts);

let result;
try {
  if (system.reset) await system.reset(opts);
  result = { ok: true, ...(await suite(system, opts)) };
} catch (err) {
  result = { ok: false, error: err?.stack ?? String(err) };
} finally {
  if (system.cleanup) await system.cleanup().catch(() => {});
}
if (values.out) await writeFile(values.out, JSON.stringify(result));
else console.log(JSON.stringify(result));
// Client libraries keep timers and sockets; the measurement is over, so leave now.
process.exit(result.ok ? 0 : 1);
