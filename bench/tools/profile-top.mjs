// What a V8 CPU profile (.cpuprofile: TSCHED_BENCH_PROFILE, TSCHED_BENCH_AGENT_PROFILE, node --cpu-prof)
// spent its time on, by self time: per source file and per function; with --callers NAME, which call paths
// a function's self time came from (a native entry such as writev or fdatasync says little alone).
//   node bench/tools/profile-top.mjs /tmp/server.cpuprofile [--top N] [--callers NAME …]

import { readFileSync } from 'node:fs';

/** Self time (µs) per profile node id. */
export function selfTimes(profile) {
  const self = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  return self;
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
  const callers = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--top') top = Number(args[++i]);
    else if (args[i] === '--callers') callers.push(args[++i]);
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
  const self = selfTimes(profile);
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const line = (us, label) => `${(us / 1000).toFixed(0).padStart(8)} ms ${((100 * us) / total).toFixed(1).padStart(5)} %  ${label}`;
  const byFile = new Map();
  const byFunction = new Map();
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = nodes.get(id).callFrame;
    const f = fileOf(url, functionName);
    byFile.set(f, (byFile.get(f) ?? 0) + us);
    const fn = url ? `${functionName || '(anonymous)'}  ${shortPath(url)}:${lineNumber + 1}` : f;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
  }
  const sorted = (m) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top);
  console.log(`${(total / 1000).toFixed(0)} ms sampled\n-- by file`);
  for (const [k, us] of sorted(byFile)) console.log(line(us, k));
  console.log('-- by function');
  for (const [k, us] of sorted(byFunction)) console.log(line(us, k));
  for (const name of callers) {
    const paths = new Map();
    for (const [id, us] of self) {
      if (nodes.get(id).callFrame.functionName !== name) continue;
      const chain = [];
      for (let p = parent.get(id); p !== undefined && chain.length < 4; p = parent.get(p)) {
        const c = nodes.get(p).callFrame;
        chain.push(`${c.functionName || '(anonymous)'} ${shortPath(c.url)}:${c.lineNumber + 1}`);
      }
      const key = chain.join(' < ');
      paths.set(key, (paths.get(key) ?? 0) + us);
    }
    console.log(`-- ${name}, by caller`);
    for (const [k, us] of sorted(paths)) console.log(line(us, k));
  }
}
