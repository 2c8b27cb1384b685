// What joining cgroups costs a short run: the worker's spawner helper (dist/worker/spawner.js, as the shell
// executor drives it) runs N `/bin/true` runs with C in flight, each joining one cgroup per hierarchy named
// (cgroup v1: memory, cpu, cpuacct…; made beforehand under <hierarchy>/tsched-bench-spawner/, removed after),
// and prints runs/s for each set, alternating, ROUNDS times. Needs root, cgroup v1 mounts and `npm run build`.
//   node bench/tools/spawner-cgroups.mjs [--runs N] [--inflight C] [--rounds R] SET…
//   e.g. node bench/tools/spawner-cgroups.mjs none memory cpu cpuacct memory,cpu,cpuacct

import { existsSync, mkdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = '/sys/fs/cgroup';
const BASE = 'tsched-bench-spawner';

/** A set as given ("none", or comma-separated hierarchies) → the hierarchy names; throws on a bad one. */
export function parseSet(arg, available) {
  if (arg === 'none') return [];
  const names = arg.split(',').filter(Boolean);
  if (names.length === 0) throw new Error(`expected "none" or comma-separated hierarchies, got "${arg}"`);
  for (const n of names)
    if (!available.includes(n)) throw new Error(`"${n}": expected one of ${available.join(', ')} (the cgroup v1 mounts under ${ROOT})`);
  return names;
}

/** The cgroup dirs of slot i for these hierarchies. */
function slotDirs(names, i) {
  return names.map((h) => join(ROOT, h, BASE, `s${i}`));
}

async function measure(Spawner, names, runs, inflight) {
  const slots = Array.from({ length: inflight }, (_, i) => slotDirs(names, i).map((d) => join(d, 'cgroup.procs')));
  const sp = await Spawner.start((m) => process.stderr.write(`spawner: ${m}\n`));
  if (!sp) throw new Error('no spawner helper runs here (npm run build makes the native one; perl is the fallback)');
  const free = slots.map((_, i) => i);
  let started = 0;
  let done = 0;
  const t0 = performance.now();
  await new Promise((resolve, reject) => {
    const next = () => {
      while (free.length > 0 && started < runs) {
        const slot = free.pop();
        const runId = ++started;
        sp.spawn(
          { runId, cwd: '/tmp', procsFiles: slots[slot], argv: ['/bin/true'], env: { PATH: '/usr/bin:/bin' } },
          {
            onPid() {},
            onFail: (code, message) => reject(new Error(`run ${runId} could not start: ${code} ${message}`)),
            onData() {},
            onExit() {},
            onDone() {
              free.push(slot);
              if (++done === runs) resolve();
              else next();
            },
          },
        );
      }
    };
    next();
  });
  const perSec = runs / ((performance.now() - t0) / 1000);
  await sp.close();
  return perSec;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const usage = 'usage: node bench/tools/spawner-cgroups.mjs [--runs N] [--inflight C] [--rounds R] SET… (SET: none, or e.g. memory,cpu)\n';
  let values;
  let positionals;
  try {
    ({ values, positionals } = parseArgs({
      options: {
        runs: { type: 'string', default: '4000' },
        inflight: { type: 'string', default: '50' },
        rounds: { type: 'string', default: '2' },
      },
      allowPositionals: true,
    }));
  } catch (e) {
    process.stderr.write(`${e.message}\n${usage}`);
    process.exit(2);
  }
  const int = (flag) => {
    const n = Number(values[flag]);
    if (!Number.isInteger(n) || n < 1) {
      process.stderr.write(`--${flag}: expected a whole number ≥ 1, got "${values[flag]}"\n`);
      process.exit(2);
    }
    return n;
  };
  const [runs, inflight, rounds] = [int('runs'), int('inflight'), int('rounds')];
  if (positionals.length === 0) {
    process.stderr.write(usage);
    process.exit(2);
  }
  if (existsSync(join(ROOT, 'cgroup.controllers'))) {
    process.stderr.write(`${ROOT} is cgroup v2 (unified): this tool measures v1 hierarchies\n`);
    process.exit(2);
  }
  const available = ['memory', 'cpu', 'cpuacct', 'pids', 'blkio', 'cpuset'].filter((h) => existsSync(join(ROOT, h, 'cgroup.procs')));
  let sets;
  try {
    sets = positionals.map((a) => ({ label: a, names: parseSet(a, available) }));
  } catch (e) {
    process.stderr.write(`${e.message}\n`);
    process.exit(2);
  }
  const { Spawner } = await import('../../dist/worker/spawner.js');
  const made = [];
  try {
    for (const { names } of sets)
      for (let i = 0; i < inflight; i++)
        for (const d of slotDirs(names, i))
          if (!existsSync(d)) {
            mkdirSync(d, { recursive: true });
            made.push(d);
          }
    for (let r = 1; r <= rounds; r++)
      for (const { label, names } of sets)
        console.log(`round ${r}  ${label.padEnd(24)} ${Math.round(await measure(Spawner, names, runs, inflight))} runs/s`);
  } catch (e) {
    process.stderr.write(`${e.message}${e.code === 'EACCES' || e.code === 'EPERM' ? ' (cgroups need root)' : ''}\n`);
    process.exitCode = 1;
  } finally {
    for (const d of made.reverse()) {
      try {
        rmdirSync(d);
      } catch {
        /* still busy: left for the next run */
      }
    }
    for (const h of available) {
      try {
        rmdirSync(join(ROOT, h, BASE));
      } catch {
        /* absent or not empty */
      }
    }
  }
}
