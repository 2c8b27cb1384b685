// Human output: aligned tables, relative ages, resources in words. Pure functions of their input (and of
// `now`), so tests can pin them.

import type { Explanation, Run, Task, TaskEventRecord, WorkerWithLoad } from '../client/index.js';
import { priorityName } from '../domain/priority.js';
import type { ResourceRequest } from '../domain/resources.js';
import { formatCpus, formatDuration, formatSize } from '../domain/units.js';

/** Pads columns to their widest cell. The last column is not padded (no trailing spaces). */
export function table(headers: string[], rows: string[][]): string {
  const all = [headers, ...rows];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => visibleLength(r[i] ?? ''))));
  return all
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell + ' '.repeat((widths[i] as number) - visibleLength(cell))))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function visibleLength(s: string): number {
  return [...s].length;
}

/** "3s", "2m", "5h", "4d" — coarse, like kubectl. Future times get "in 3m". */
export function age(then: number, now: number = Date.now()): string {
  const d = now - then;
  if (d < 0) return `in ${age(now, then)}`;
  const s = Math.floor(d / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

export function iso(t: number | null | undefined): string {
  return t === null || t === undefined ? '-' : new Date(t).toISOString();
}

/** "1cpu 512MiB", "0.5cpu 2GiB 2 ports". */
export function resources(r: ResourceRequest): string {
  const parts = [`${formatCpus(r.cpus)}cpu`, formatSize(r.memory)];
  const ports = r.ports + r.portNames.length;
  if (ports > 0) parts.push(`${ports} port${ports === 1 ? '' : 's'}`);
  return parts.join(' ');
}

export function taskTable(tasks: Task[], now: number = Date.now()): string {
  return table(
    ['ID', 'NAME', 'STATUS', 'ATTEMPTS', 'RESOURCES', 'AGE'],
    tasks.map((t) => [
      String(t.id),
      truncate(t.name, 40),
      t.status,
      `${t.attempts}/${t.totalAttempts}`,
      resources(t.resources),
      age(t.createdAt, now),
    ]),
  );
}

export function workerTable(workers: WorkerWithLoad[], now: number = Date.now()): string {
  return table(
    ['NAME', 'STATE', 'CAPACITY', 'ALLOCATED', 'FREE', 'ENFORCEMENT', 'LAST SEEN'],
    workers.map((w) => {
      const cap = w.capacity;
      const capPorts = cap.ports ? cap.ports.to - cap.ports.from + 1 : 0;
      const free = {
        cpus: Math.max(0, cap.cpus - w.allocated.cpus),
        memory: Math.max(0, cap.memory - w.allocated.memory),
        ports: Math.max(0, capPorts - w.allocated.ports.length),
      };
      const shape = (c: number, m: number, p: number | null) => `${formatCpus(c)}cpu ${formatSize(m)}${p ? ` ${p}p` : ''}`;
      return [
        w.name,
        w.state,
        shape(cap.cpus, cap.memory, capPorts || null),
        shape(w.allocated.cpus, w.allocated.memory, w.allocated.ports.length || null),
        shape(free.cpus, free.memory, capPorts ? free.ports : null),
        `mem:${w.enforcement.memory} cpu:${w.enforcement.cpu}`,
        `${age(w.lastSeenAt, now)} ago`,
      ];
    }),
  );
}

export function eventTable(events: TaskEventRecord[]): string {
  return table(
    ['AT', 'TYPE', 'FROM → TO', 'RUN', 'ACTOR', 'REASON'],
    events.map((e) => [
      iso(e.at),
      e.type,
      e.from || e.to ? `${e.from ?? '-'} → ${e.to ?? '-'}` : '',
      e.runId === null ? '' : String(e.runId),
      e.actor,
      e.reason ?? '',
    ]),
  );
}

export function explanationText(x: Explanation, now: number = Date.now()): string {
  const lines = [x.message];
  // The server's message may already state the queue position and band; do not say it twice.
  if (x.rank !== null && x.rank !== undefined && !/\bband\b/.test(x.message))
    lines.push(`queue position: ${x.rank}${x.band !== null && x.band !== undefined ? ` (band ${x.band})` : ''}`);
  for (const r of x.reasons) lines.push(`  ${r.code}: ${r.workers} worker${r.workers === 1 ? '' : 's'}${r.detail ? ` — ${r.detail}` : ''}`);
  if (x.estimatedStart !== null && x.estimatedStart !== undefined)
    lines.push(`estimated start: ${iso(x.estimatedStart)} (${age(x.estimatedStart, now)})`);
  return lines.join('\n');
}

/** Every field of a task, every attempt, the explanation and the events: `tsched show`. */
export function taskDetail(
  task: Task,
  runs: Run[],
  explanation: Explanation | null,
  events: TaskEventRecord[] | null,
  now = Date.now(),
): string {
  const what =
    task.script !== null
      ? `inline script (${task.script.split('\n').length} lines)`
      : task.scriptPath !== null
        ? `script ${task.scriptPath}`
        : argv(task.command);
  const fields: Array<[string, string]> = [
    ['id', String(task.id)],
    ['name', task.name],
    ['status', task.status + (task.paused ? ' (paused)' : '')],
    ['owner', task.owner],
    ['command', what + (task.shell ? ' (via /bin/sh -c)' : '')],
    ['executor', task.executor + (task.image ? ` (image ${task.image})` : '')],
    ['resources', resources(task.resources) + (task.resources.category ? ` (${task.resources.category})` : '')],
  ];
  if (task.resources.portNames.length > 0) fields.push(['named ports', task.resources.portNames.join(', ')]);
  fields.push(
    ['priority', `${priorityName(task.priority)}${priorityName(task.priority) === String(task.priority) ? '' : ` (${task.priority})`}`],
    ['attempts', `${task.attempts} of ${task.totalAttempts} used`],
    ['execution cap', formatDuration(task.executionCap)],
    ['delay tolerance', formatDuration(task.delayTolerance)],
    [
      'retry',
      `backoff ${formatDuration(task.retry.backoff)}, max delay ${formatDuration(task.retry.maxDelay)}${task.retry.noRetryExitCodes.length ? `, no retry on exit ${task.retry.noRetryExitCodes.join(',')}` : ''}`,
    ],
    ['schedule', scheduleText(task)],
    ['due', `${iso(task.dueAt)} (${age(task.dueAt, now)}${task.dueAt > now ? '' : ' ago'})`],
    ['start deadline', iso(task.startDeadline) + (task.deadlineMissed ? ' (missed)' : '')],
    ['on deadline miss', task.onDeadlineMiss],
    ['created', iso(task.createdAt)],
    ['updated', iso(task.updatedAt)],
    ['finished', iso(task.finishedAt)],
  );
  if (task.parentId !== null) fields.push(['parent', `${task.parentId} (occurrence of ${iso(task.occurrenceAt)})`]);
  if (task.placement) fields.push(['placement', task.placement]);
  if (Object.keys(task.env).length) fields.push(['env', kv(task.env)]);
  if (Object.keys(task.labels).length) fields.push(['labels', kv(task.labels)]);
  if (Object.keys(task.constraints).length) fields.push(['constraints', kv(task.constraints)]);
  if (task.notify) fields.push(['notify', `${task.notify.url} on ${task.notify.events.join(', ')}`]);
  if (task.lastError) fields.push(['last error', task.lastError]);

  const width = Math.max(...fields.map(([k]) => k.length));
  const out = fields.map(([k, v]) => `${`${k}:`.padEnd(width + 1)} ${v}`);

  out.push('', runs.length ? `attempts (${runs.length}):` : 'attempts: none yet');
  for (const r of runs) out.push(runText(r, task));

  if (explanation) out.push('', 'why it is waiting:', indent(explanationText(explanation, now), '  '));
  if (events) out.push('', events.length ? 'events:' : 'events: none', ...(events.length ? [indent(eventTable(events), '  ')] : []));
  return out.join('\n');
}

function runText(r: Run, task: Task): string {
  const ports = r.allocation.ports.length ? ` ports ${r.allocation.ports.join(',')}` : '';
  const usage: string[] = [];
  if (r.usage.peakMemory !== null)
    usage.push(`peak memory ${formatSize(r.usage.peakMemory)} of ${formatSize(task.resources.memory)} requested`);
  if (r.usage.cpuSeconds !== null)
    usage.push(
      `cpu ${r.usage.cpuSeconds.toFixed(2)}s (allocated ${formatCpus(r.allocation.cpus)} core${r.allocation.cpus === 1000 ? '' : 's'})`,
    );
  const took = r.startedAt !== null && r.finishedAt !== null ? ` (ran ${formatDuration(r.finishedAt - r.startedAt)})` : '';
  const lines = [
    `  #${r.attempt} run ${r.id} on ${r.workerName}: ${r.state}${r.exitCode !== null ? `, exit code ${r.exitCode}` : ''}${r.cancelRequested && r.outcome === null ? ' (cancel requested)' : ''}`,
    `     allocated ${formatCpus(r.allocation.cpus)}cpu ${formatSize(r.allocation.memory)}${ports}`,
    `     assigned ${iso(r.assignedAt)}, started ${iso(r.startedAt)}, finished ${iso(r.finishedAt)}${took}`,
  ];
  if (r.reason) lines.push(`     reason: ${r.reason}`);
  if (usage.length) lines.push(`     usage: ${usage.join('; ')}`);
  return lines.join('\n');
}

function scheduleText(task: Task): string {
  const s = task.schedule;
  if (!s || s.type === 'once') return s?.startAt ? `once at ${iso(s.startAt)}` : 'once';
  const parts: string[] = [s.type];
  if (s.cron) parts.push(`"${s.cron}"`);
  if (s.on !== undefined) parts.push(`on ${Array.isArray(s.on) ? s.on.join(',') : s.on}`);
  if (s.at) parts.push(`at ${s.at}`);
  parts.push(s.timezone);
  if (s.startAt !== undefined) parts.push(`from ${iso(s.startAt)}`);
  if (s.endAt !== undefined) parts.push(`until ${iso(s.endAt)}`);
  if (s.maxOccurrences !== undefined) parts.push(`at most ${s.maxOccurrences} times`);
  parts.push(`overlap ${s.overlap}`);
  return parts.join(' ');
}

function argv(cmd: string[]): string {
  return cmd.map((a) => (/^[A-Za-z0-9_./:=@%+,-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

function kv(m: Record<string, string>): string {
  return Object.entries(m)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
}

function indent(s: string, pad: string): string {
  return s
    .split('\n')
    .map((l) => pad + l)
    .join('\n');
}

function truncate(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`;
}
