// CPU time per kind of process over a window, from /proc: where a suite's CPU goes, per task when divided
// by the tasks it ran. Start it while a suite runs:
//   node bench/tools/cpu-by-process.mjs 8
// Processes are grouped by their command line (the tsched server, worker agents, spawner helpers with the
// tasks they forked, PostgreSQL backends, Redis, the harness); CPU is user + system time in the window.

import { readdirSync, readFileSync } from 'node:fs';

export const TICKS_PER_SECOND = 100; // USER_HZ, 100 on Linux
/** The group a process belongs to, or null for this tool itself. */
export function groupOf(cmdline) {
  if (cmdline.includes('cpu-by-process')) return null;
  if (cmdline.includes('tsched-server')) return 'tsched server';
  if (cmdline.includes('tsched-worker')) return 'tsched agents';
  if (cmdline.includes('spawner')) return 'spawner helpers (with the tasks they forked)';
  if (cmdline.startsWith('postgres')) return 'postgres';
  if (cmdline.includes('redis')) return 'redis';
  if (cmdline.includes('bench/run.mjs') || cmdline.includes('bench/trial.mjs')) return 'harness';
  return `other: ${cmdline.slice(0, 40)}`;
}

/**
 * A process's CPU from /proc/PID/stat, in clock ticks (USER_HZ): its own (utime + stime) and its reaped
 * children's (cutime + cstime). The command name may hold spaces and parentheses: fields follow the last ')'.
 */
export function statTicks(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { own: Number(f[11]) + Number(f[12]), children: Number(f[13]) + Number(f[14]) };
}

function sample() {
  const out = new Map();
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const group = groupOf(readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim());
      if (group === null) continue;
      const t = statTicks(pid);
      // A spawner also counts its reaped children: the tasks it ran.
      out.set(pid, { group, ticks: t.own + (group.startsWith('spawner') ? t.children : 0) });
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const seconds = Number(process.argv[2] ?? 8);
  if (!(seconds > 0)) {
    process.stderr.write('usage: node bench/tools/cpu-by-process.mjs SECONDS (a number > 0)\n');
    process.exit(2);
  }

  const start = Date.now();
  let last = sample();
  const ticks = new Map();
  // Sampled often, so that a process born and gone inside the window still counts most of its time.
  while (Date.now() - start < seconds * 1000) {
    await new Promise((r) => setTimeout(r, 200));
    const now = sample();
    for (const [pid, p] of now) {
      const d = p.ticks - (last.get(pid)?.ticks ?? 0);
      if (d > 0) ticks.set(p.group, (ticks.get(p.group) ?? 0) + d);
    }
    last = new Map([...last, ...now]);
  }
  const wall = (Date.now() - start) / 1000;
  let total = 0;
  console.log(`CPU over ${wall.toFixed(1)} s of wall time:`);
  for (const [group, t] of [...ticks].sort((a, b) => b[1] - a[1])) {
    total += t;
    console.log(`  ${(t / TICKS_PER_SECOND).toFixed(2).padStart(7)} s  ${group}`);
  }
  console.log(`  ${(total / TICKS_PER_SECOND).toFixed(2).padStart(7)} s  in all (${(total / TICKS_PER_SECOND / wall).toFixed(2)} cores)`);
}
