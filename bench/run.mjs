#!/usr/bin/env node
// Side-by-side benchmarks of tsched against BullMQ, pg-boss and graphile-worker (see docs/bench.md).
// Each (suite, system, run) is one fresh child process (trial.mjs), so systems never run at once and
// nothing carries over. Runs are interleaved (run 1 of every system, then run 2, …) so that drift in the
// machine's load spreads over all systems alike. Prints the table and writes BENCHMARKS.md.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { machineInfo } from './lib/machine.mjs';
import { renderMarkdown } from './lib/report.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TRIAL = fileURLToPath(new URL('./trial.mjs', import.meta.url));
const SUITES = ['throughput', 'exec', 'latency'];
const SYSTEMS = ['tsched-sqlite', 'tsched-pg', 'bullmq', 'pgboss', 'graphile'];
const LABELS = {
  'tsched-sqlite': 'tsched (SQLite)',
  'tsched-pg': 'tsched (PostgreSQL)',
  bullmq: 'BullMQ',
  pgboss: 'pg-boss',
  graphile: 'graphile-worker',
  raw: 'raw spawn (limit)',
};
const BACKENDS = {
  'tsched-sqlite': 'SQLite',
  'tsched-pg': 'PostgreSQL',
  bullmq: 'Redis',
  pgboss: 'PostgreSQL',
  graphile: 'PostgreSQL',
  raw: '—',
};

const HELP = `Usage: node bench/run.mjs [options]   (build first: npm run build)

  --suites LIST       throughput,exec,latency (default: all)
  --systems LIST      ${SYSTEMS.join(',')} (default: all; the raw spawn rate always joins exec)
  --quick             dev mode: N 2,000, exec 1,000, latency 5 s, 1 run
  --runs K            runs per measure (default 3; the table shows the median and min–max)
  --n N               tasks in the throughput suite (default 20000)
  --exec-n N          /bin/true tasks in the exec suite (default 10000)
  --concurrency C     in-flight jobs in throughput and latency (default 50)
  --chunk K           tasks per bulk submit (default 2000)
  --fleet F           simulated tsched workers sharing the in-flight slots (default 1, like the peers' one worker at concurrency 50)
  --inflight K        /bin/true in flight per worker process in exec (default 50)
  --processes P       worker processes in exec (default 2)
  --rates LIST        latency rates per second (default 100,1000)
  --duration S        latency duration per rate, seconds (default 30)
  --warmup S          latency: unmeasured sends at the same rate first, seconds (default 3; 0: none)
  --out FILE          Markdown report (default BENCHMARKS.md at the repo root)
  --no-write          print only
  --json FILE         also write every raw result as JSON
  --trial-timeout S   kill a trial after S seconds (default 600)
`;

/** A bad command line: what is wrong, then the usage; exit 2. */
function usageError(message) {
  process.stderr.write(`${message}\n\n${HELP}`);
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      suites: { type: 'string' },
      systems: { type: 'string' },
      quick: { type: 'boolean', default: false },
      runs: { type: 'string' },
      n: { type: 'string' },
      'exec-n': { type: 'string' },
      concurrency: { type: 'string' },
      chunk: { type: 'string' },
      fleet: { type: 'string' },
      inflight: { type: 'string' },
      processes: { type: 'string' },
      rates: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      out: { type: 'string' },
      'no-write': { type: 'boolean', default: false },
      json: { type: 'string' },
      'trial-timeout': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (e) {
  // An unknown flag, a value that looks like a flag (--duration -1), a flag without its value.
  usageError(e.message);
}
if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}

function int(flag, v, dflt, min = 1) {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`--${flag}: expected an integer ≥ ${min}, got "${v}"\n`);
    process.exit(2);
  }
  return n;
}
function list(flag, v, allowed, dflt) {
  if (v === undefined) return dflt;
  const items = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const bad = items.filter((x) => !allowed.includes(x));
  if (bad.length || !items.length) {
    process.stderr.write(`--${flag}: expected a comma-separated list of ${allowed.join(', ')}, got "${v}"\n`);
    process.exit(2);
  }
  return items;
}

const quick = values.quick;
const options = {
  argv: process.argv.slice(2),
  runs: int('runs', values.runs, quick ? 1 : 3),
  n: int('n', values.n, quick ? 2_000 : 20_000),
  execN: int('exec-n', values['exec-n'], quick ? 1_000 : 10_000),
  concurrency: int('concurrency', values.concurrency, 50),
  chunk: int('chunk', values.chunk, 2_000),
  fleet: int('fleet', values.fleet, 1),
  inflight: int('inflight', values.inflight, 50),
  processes: int('processes', values.processes, 2),
  durationSec: int('duration', values.duration, quick ? 5 : 30),
  warmupSec: int('warmup', values.warmup, quick ? 1 : 3, 0),
  rates: [100, 1000],
  trialTimeoutSec: int('trial-timeout', values['trial-timeout'], 600),
};
if (values.rates !== undefined) {
  options.rates = values.rates.split(',').map((r) => int('rates', r.trim()));
}
if (options.concurrency % options.fleet !== 0) {
  process.stderr.write(`--fleet: ${options.fleet} workers cannot share ${options.concurrency} in-flight slots evenly\n`);
  process.exit(2);
}
const suites = list('suites', values.suites, SUITES, SUITES);
let systems = list('systems', values.systems, SYSTEMS, SYSTEMS).sort((a, b) => SYSTEMS.indexOf(a) - SYSTEMS.indexOf(b));
if (systems.some((s) => s.startsWith('tsched')) && !existsSync(join(ROOT, 'dist/server/embedded.js'))) {
  console.warn('\n!!! tsched is not built (dist/server/embedded.js is missing): run `npm run build`. Benchmarking the peers only. !!!\n');
  systems = systems.filter((s) => !s.startsWith('tsched'));
}

function runTrial(suite, system, opts) {
  return mkdtemp(join(tmpdir(), 'tsched-bench-trial-')).then((dir) => trialIn(dir, suite, system, opts));
}

function trialIn(dir, suite, system, opts) {
  return new Promise((resolve) => {
    const out = join(dir, 'result.json');
    const child = spawn(process.execPath, [TRIAL, '--suite', suite, '--system', system, '--opts', JSON.stringify(opts), '--out', out], {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.trialTimeoutSec * 1000);
    child.once('exit', async (code, signal) => {
      clearTimeout(timer);
      let result;
      try {
        result = JSON.parse(await readFile(out, 'utf8'));
      } catch {
        result = { ok: false, error: `trial exited (${code ?? signal}) without a result${signal === 'SIGKILL' ? ': timed out' : ''}` };
      }
      await rm(dir, { recursive: true, force: true });
      resolve(result);
    });
  });
}

function summary(r) {
  if (!r.ok) return `FAILED: ${String(r.error).split('\n')[0]}`;
  if (r.completionsPerSec) return `submits ${Math.round(r.submitsPerSec)}/s, completions ${Math.round(r.completionsPerSec)}/s`;
  if (r.perSec) return `${Math.round(r.perSec)} tasks/s`;
  return `p50 ${r.p50.toFixed(1)} p90 ${r.p90.toFixed(1)} p99 ${r.p99.toFixed(1)} max ${r.max.toFixed(1)} ms`;
}

const startedAt = new Date().toISOString();
const machine = await machineInfo();
const results = [];
const plan = [];
for (const suite of suites) {
  const variants = suite === 'latency' ? options.rates : [undefined];
  const members = suite === 'exec' ? ['raw', ...systems] : systems;
  for (const variant of variants) {
    for (let run = 1; run <= options.runs; run++) {
      for (const system of members) {
        const opts =
          suite === 'throughput'
            ? { n: options.n, concurrency: options.concurrency, chunk: options.chunk, fleetSize: options.fleet }
            : suite === 'exec'
              ? { n: options.execN, inflight: options.inflight, processes: options.processes, chunk: options.chunk }
              : {
                  rate: variant,
                  durationMs: options.durationSec * 1000,
                  warmupMs: options.warmupSec * 1000,
                  concurrency: options.concurrency,
                  fleetSize: options.fleet,
                };
        plan.push({ suite, system, run, variant, opts });
      }
    }
  }
}
let k = 0;
for (const p of plan) {
  k++;
  const tag = `[${k}/${plan.length}] ${p.suite}${p.variant ? ` ${p.variant}/s` : ''} ${LABELS[p.system]} run ${p.run}`;
  process.stdout.write(`${tag} …\n`);
  const result = await runTrial(p.suite, p.system, p.opts);
  results.push({ suite: p.suite, system: p.system, run: p.run, variant: p.variant, result });
  process.stdout.write(`${tag}: ${summary(result)}\n`);
}

const md = renderMarkdown({
  results,
  machine,
  machineEnd: await machineInfo(),
  options,
  labels: LABELS,
  backends: BACKENDS,
  systems: ['raw', ...systems],
  startedAt,
  finishedAt: new Date().toISOString(),
});
process.stdout.write(`\n${md}`);
if (!values['no-write']) {
  const path = values.out ?? join(ROOT, 'BENCHMARKS.md');
  // What profiling found and what was changed lives in bench/FINDINGS.md, kept across reruns.
  const findings = await readFile(join(ROOT, 'bench/FINDINGS.md'), 'utf8').catch(() => '');
  await writeFile(path, findings ? `${md}\n${findings}` : md);
  process.stdout.write(`\nwritten to ${path}\n`);
}
if (values.json) await writeFile(values.json, JSON.stringify({ machine, options, results }, null, 2));
process.exit(results.every((r) => r.result.ok) ? 0 : 1);
