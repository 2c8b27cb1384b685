// What a V8 CPU profile (.cpuprofile: TSCHED_BENCH_PROFILE, TSCHED_BENCH_AGENT_PROFILE, node --cpu-prof)
// spent its time on, by self time: per source file and per function; with --callers NAME, which call paths
// a function's self time came from (a native entry such as writev or fdatasync says little alone); with
// --inclusive N, the N functions with the most time spent in them and what they called. --from and --to
// (ms from the first sample) keep one phase of a run: the throughput suite's drain without its submits.
//   node bench/tools/profile-top.mjs /tmp/server.cpuprofile [--top N] [--callers NAME … [--depth N]]
//     [--inclusive N] [--from MS] [--to MS]

import { readFileSync } from 'node:fs';

/** Calls f(node id, µs) for each sample whose time (ms from the first sample) lies in [from, to]. */
function eachSample(profile, window, f) {
  const from = window?.from ?? Number.NEGATIVE_INFINITY;
  const to = window?.to ?? Number.POSITIVE_INFINITY;
  let at = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    const ms = at / 1000;
    if (ms >= from && ms <= to) f(profile.samples[i], delta);
  }
}

/** Self time (µs) per profile node id, of the samples in `window` ({ from, to } ms; all when absent). */
export function selfTimes(profile, window) {
  const self = new Map();
  eachSample(profile, window, (id, us) => self.set(id, (self.get(id) ?? 0) + us));
  return self;
}

/** A function as the summaries name it: `name file:line`, or a native entry in parentheses. */
export function functionLabel({ functionName, url, lineNumber }) {
  return url ? `${functionName || '(anonymous)'}  ${shortPath(url)}:${lineNumber + 1}` : fileOf(url, functionName);
}

/**
 * Inclusive time (µs) per function (`name file:line`): each sample counts once for every function on its
 * stack, however often it recurs there.
 */
export function inclusiveTimes(profile, window) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const out = new Map();
  eachSample(profile, window, (id, us) => {
    const seen = new Set();
    for (let n = id; n !== undefined; n = parent.get(n)) {
      const key = functionLabel(nodes.get(n).callFrame);
      if (seen.has(key)) continue;
      seen.add(key);
      out.set(key, (out.get(key) ?? 0) + us);
    }
  });
  return out;
}

/** A function's file, short: the path inside its npm package or under dist/, or Node's own module. */
export function shortPath(url) {
  return url
    .replace(/^.*\/node_modules\//, '')
    .replace(/^.*\/dist\//, 'dist/')
    .replace(/^file:\/\//, '');
}

/** A source location folded to what matters: the npm package, the file under dist/, or Node's internals. */
export function fileOf(url, functionName) {
  if (!url) return functionName.startsWith('(') ? functionName : `(${functionName || 'native'})`;
  const pkg = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return `npm:${pkg[1]}`;
  if (url.startsWith('node:')) return 'node internals';
  const dist = /\/dist\/(.*)$/.exec(url);
  return dist ? `dist/${dist[1]}` : url.replace(/^file:\/\//, '');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const file = args.shift();
  if (!file) {
    process.stderr.write('usage: node bench/tools/profile-top.mjs PROFILE [--top N] [--callers NAME …]\n');
    process.exit(2);
  }
  let top = 30;
  let inclusive = 0;
  let depth = 4;
  const callers = [];
  const window = {};
  const number = (flag, v) => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n) || n < 0) {
      process.stderr.write(`${flag}: expected a number ≥ 0, got ${v === undefined ? 'nothing' : `"${v}"`}\n`);
      process.exit(2);
    }
    return n;
  };
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--top') top = number('--top', args[++i]);
    else if (args[i] === '--callers') callers.push(args[++i]);
    else if (args[i] === '--inclusive') inclusive = number('--inclusive', args[++i]);
    else if (args[i] === '--depth') depth = number('--depth', args[++i]);
    else if (args[i] === '--from') window.from = number('--from', args[++i]);
    else if (args[i] === '--to') window.to = number('--to', args[++i]);
    else {
      process.stderr.write(`unknown option ${args[i]}: expected --top, --callers, --depth, --inclusive, --from or --to\n`);
      process.exit(2);
    }
  }
  let profile;
  try {
    profile = JSON.parse(readFileSync(file, 'utf8'));
    if (!Array.isArray(profile.nodes) || !Array.isArray(profile.samples)) throw new Error('no nodes and samples in it');
  } catch (e) {
    process.stderr.write(`${file}: expected a V8 CPU profile (.cpuprofile): ${e.message}\n`);
    process.exit(2);
  }
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = selfTimes(profile, window);
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const line = (us, label) => `${(us / 1000).toFixed(0).padStart(8)} ms ${((100 * us) / total).toFixed(1).padStart(5)} %  ${label}`;
  const byFile = new Map();
  const byFunction = new Map();
  for (const [id, us] of self) {
    const frame = nodes.get(id).callFrame;
    const f = fileOf(frame.url, frame.functionName);
    byFile.set(f, (byFile.get(f) ?? 0) + us);
    const fn = functionLabel(frame);
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
  }
  const sorted = (m) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top);
  console.log(`${(total / 1000).toFixed(0)} ms sampled\n-- by file`);
  for (const [k, us] of sorted(byFile)) console.log(line(us, k));
  console.log('-- by function');
  for (const [k, us] of sorted(byFunction)) console.log(line(us, k));
  for (const given of callers) {
    // Native entries are printed in parentheses, "(writev)", and named without them in the profile.
    const name = /^\(.*\)$/.test(given) && !/^\((garbage collector|program|idle|root)\)$/.test(given) ? given.slice(1, -1) : given;
    const paths = new Map();
    for (const [id, us] of self) {
      if (nodes.get(id).callFrame.functionName !== name) continue;
      const chain = [];
      for (let p = parent.get(id); p !== undefined && chain.length < depth; p = parent.get(p)) {
        const c = nodes.get(p).callFrame;
        chain.push(`${c.functionName || '(anonymous)'} ${shortPath(c.url)}:${c.lineNumber + 1}`);
      }
      const key = chain.join(' < ');
      paths.set(key, (paths.get(key) ?? 0) + us);
    }
    console.log(`-- ${given}, by caller`);
    for (const [k, us] of sorted(paths)) console.log(line(us, k));
  }
  if (inclusive > 0) {
    console.log('-- inclusive (the function and what it called)');
    for (const [k, us] of [...inclusiveTimes(profile, window)].sort((a, b) => b[1] - a[1]).slice(0, inclusive)) console.log(line(us, k));
  }
}
