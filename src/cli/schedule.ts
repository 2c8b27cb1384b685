// Recurring-task commands: `tsched schedule preview` (computed locally, no server needed), `tsched schedule
// set <id>` (edit), `tsched next <id>`, `tsched pause <id>`, `tsched resume <id>`.

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import type { OccurrenceEntry, TschedClient } from '../client/index.js';
import { isTschedError } from '../domain/errors.js';
import { normalizeSchedule } from '../domain/occurrences.js';
import { previewOccurrences } from '../domain/recurrence.js';
import type { ScheduleSpec } from '../domain/task.js';
import type { TaskInput } from '../domain/task-spec.js';
import type { ErrorContext } from './errors.js';
import { UsageError } from './errors.js';

type ScheduleInput = NonNullable<TaskInput['schedule']>;

export interface ScheduleCommandDeps {
  program: Command;
  sub: (name: string, parent?: Command) => Command;
  client: (cmd: Command) => TschedClient;
  ctx: ErrorContext;
  out: (s: string) => void;
  json: (v: unknown) => void;
  parseId: (v: string, what?: string) => number;
}

interface SpecFlags {
  file?: string;
  type?: string;
  at?: string;
  on?: string;
  cron?: string;
  timezone?: string;
  startAt?: string;
  endAt?: string;
  maxOccurrences?: string;
  overlap?: string;
}

const FLAG_OF: Record<string, string> = {
  'schedule.type': '--type',
  'schedule.at': '--at',
  'schedule.on': '--on',
  'schedule.cron': '--cron',
  'schedule.timezone': '--timezone',
  'schedule.startAt': '--start-at',
  'schedule.endAt': '--end-at',
  'schedule.maxOccurrences': '--max-occurrences',
  'schedule.overlap': '--overlap',
};

function withSpecFlags(cmd: Command): Command {
  return cmd
    .option('-f, --file <spec>', 'a YAML or JSON file: a schedule object, or a task manifest with a schedule (- reads stdin)')
    .option('--type <type>', 'daily | weekly | monthly | annually | cron | once (default: cron with --cron, else daily)')
    .option('--at <HH:MM>', 'local time of day (daily, weekly, monthly, annually)')
    .option('--on <days>', 'weekly: mon,wed or mon-fri; monthly: 15 or last; annually: 12-25')
    .option('--cron <expr>', 'a 5-field cron expression, or 6 with seconds first')
    .option('--timezone <zone>', 'IANA time zone (default UTC)')
    .option('--start-at <iso>', 'no occurrence before this instant')
    .option('--end-at <iso>', 'no occurrence after this instant')
    .option('--max-occurrences <n>', 'stop after this many occurrences')
    .option('--overlap <policy>', 'skip | queue | allow | replace (default skip)');
}

/** The schedule a user gave as flags or as a file, as the API takes it (not yet validated). */
export function scheduleInputFromFlags(f: SpecFlags): ScheduleInput {
  const flagged = ['type', 'at', 'on', 'cron', 'timezone', 'startAt', 'endAt', 'maxOccurrences', 'overlap'].filter(
    (k) => f[k as keyof SpecFlags] !== undefined,
  );
  if (f.file !== undefined) {
    if (flagged.length > 0) throw new UsageError('-f: the file holds the whole schedule; do not combine it with schedule flags');
    let text: string;
    try {
      text = readFileSync(f.file === '-' ? 0 : f.file, 'utf8');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new UsageError(e.code === 'ENOENT' ? `${f.file}: no such file` : `${f.file}: cannot read it (${e.message})`);
    }
    let data: unknown;
    try {
      data = parseYaml(text); // YAML is a superset of JSON
    } catch (err) {
      throw new UsageError(`${f.file}: not valid YAML or JSON: ${(err as Error).message}`);
    }
    const obj = data as Record<string, unknown> | null;
    const spec = obj && typeof obj === 'object' && 'schedule' in obj ? obj.schedule : obj;
    if (!spec || typeof spec !== 'object' || Array.isArray(spec) || !('type' in spec))
      throw new UsageError(`${f.file}: expected a schedule object with a "type" (or a task manifest with a "schedule")`);
    return spec as ScheduleInput;
  }
  if (flagged.length === 0)
    throw new UsageError('expected a schedule: flags such as --type daily --at 02:30, or --cron "…", or -f spec.yaml');
  const type = (f.type ?? (f.cron !== undefined ? 'cron' : 'daily')) as ScheduleInput['type'];
  let max: number | undefined;
  if (f.maxOccurrences !== undefined) {
    if (!/^\d+$/.test(f.maxOccurrences)) throw new UsageError(`--max-occurrences: expected a positive integer, got "${f.maxOccurrences}"`);
    max = Number(f.maxOccurrences);
  }
  return {
    type,
    ...(f.at !== undefined ? { at: f.at } : {}),
    ...(f.on !== undefined ? { on: f.on } : {}),
    ...(f.cron !== undefined ? { cron: f.cron } : {}),
    ...(f.timezone !== undefined ? { timezone: f.timezone } : {}),
    ...(f.startAt !== undefined ? { startAt: f.startAt } : {}),
    ...(f.endAt !== undefined ? { endAt: f.endAt } : {}),
    ...(max !== undefined ? { maxOccurrences: max } : {}),
    ...(f.overlap !== undefined ? { overlap: f.overlap as ScheduleInput['overlap'] } : {}),
  };
}

/** Validates locally with the server's own rules; a bad spec is a usage error naming the flag. */
function validated(input: ScheduleInput, fromFile: boolean): ScheduleSpec {
  try {
    return normalizeSchedule(input);
  } catch (err) {
    if (isTschedError(err) && err.code === 'VALIDATION_FAILED')
      throw new UsageError(
        'the schedule is invalid (nothing was sent):',
        err.issues.map((i) => ({ path: !fromFile && FLAG_OF[i.path] ? `${FLAG_OF[i.path]} (${i.path})` : i.path, message: i.message })),
      );
    throw err;
  }
}

export function occurrenceTable(zone: string, list: OccurrenceEntry[]): string {
  if (list.length === 0) return 'no occurrences ahead';
  const rows = list.map((o, i) => [String(i + 1), o.local, o.utc]);
  const head = ['#', `LOCAL (${zone})`, 'UTC'];
  const w = head.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] as string).length)));
  return [head, ...rows]
    .map((r) =>
      r
        .map((v, c) => v.padEnd(w[c] as number))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function parseCount(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 1000)
    throw new UsageError(`--count: expected an integer from 1 to 1000, got "${v}"`);
  return Number(v);
}

export function registerScheduleCommands(d: ScheduleCommandDeps): void {
  const { program, sub, client, ctx, out, json, parseId } = d;
  const schedule = program.command('schedule').description('preview a schedule, or change the schedule of a recurring task');

  withSpecFlags(sub('preview', schedule))
    .description('list the next occurrences of a schedule, in its time zone and in UTC (computed locally; no server needed)')
    .option('--count <n>', 'how many occurrences', '10')
    .option('--after <iso>', 'list occurrences after this instant (default now)')
    .option('--json', 'print {timezone, occurrences} as JSON')
    .action((f: SpecFlags & { count: string; after?: string; json?: boolean }) => {
      const count = parseCount(f.count);
      const spec = validated(scheduleInputFromFlags(f), f.file !== undefined);
      let after = Date.now();
      if (f.after !== undefined) {
        after = Date.parse(f.after);
        if (Number.isNaN(after))
          throw new UsageError(`--after: expected an ISO-8601 instant such as 2026-01-01T00:00:00Z, got "${f.after}"`);
      }
      const occurrences = previewOccurrences(spec, after, count);
      if (f.json) return json({ timezone: spec.timezone, occurrences });
      out(occurrenceTable(spec.timezone, occurrences));
    });

  withSpecFlags(sub('set', schedule))
    .description("replace a recurring task's schedule; it takes effect from the next occurrence")
    .argument('<id>')
    .option('--json', 'print the task as JSON')
    .action(async (id: string, f: SpecFlags & { json?: boolean }, cmd: Command) => {
      const n = parseId(id);
      ctx.subject = `task ${n}`;
      ctx.subjectCode = 'TASK_NOT_FOUND';
      const input = scheduleInputFromFlags(f);
      validated(input, f.file !== undefined);
      const t = await client(cmd).updateSchedule(n, input);
      if (f.json) return json(t);
      const next = t.recurrence?.nextOccurrenceAt;
      out(`task ${n}: schedule changed; ${next ? `next occurrence ${new Date(next).toISOString()}` : `it is ${t.status}`}`);
    });

  sub('next')
    .description('the next occurrences of a recurring task, in its time zone and in UTC')
    .argument('<id>')
    .option('--count <n>', 'how many occurrences', '10')
    .option('--json', 'print {taskId, status, paused, timezone, occurrences} as JSON')
    .action(async (id: string, f: { count: string; json?: boolean }, cmd: Command) => {
      const n = parseId(id);
      ctx.subject = `task ${n}`;
      ctx.subjectCode = 'TASK_NOT_FOUND';
      const r = await client(cmd).nextOccurrences(n, parseCount(f.count));
      if (f.json) return json(r);
      if (r.paused) out(`task ${n} is paused; after tsched resume ${n} it would run at:`);
      else if (r.status !== 'waiting') return out(`task ${n} is ${r.status}: no occurrences ahead`);
      out(occurrenceTable(r.timezone, r.occurrences));
    });

  sub('pause')
    .description('pause a recurring task: no new occurrences until resumed (running ones carry on)')
    .argument('<id>')
    .option('--json', 'print {task, changed} as JSON')
    .action(async (id: string, f: { json?: boolean }, cmd: Command) => {
      const n = parseId(id);
      ctx.subject = `task ${n}`;
      ctx.subjectCode = 'TASK_NOT_FOUND';
      const r = await client(cmd).pause(n);
      if (f.json) return json(r);
      out(r.changed ? `task ${n} paused` : `task ${n} was already paused`);
    });

  sub('resume')
    .description('resume a paused recurring task from its next occurrence after now')
    .argument('<id>')
    .option('--json', 'print {task, changed} as JSON')
    .action(async (id: string, f: { json?: boolean }, cmd: Command) => {
      const n = parseId(id);
      ctx.subject = `task ${n}`;
      ctx.subjectCode = 'TASK_NOT_FOUND';
      const r = await client(cmd).resume(n);
      if (f.json) return json(r);
      const next = r.task.recurrence?.nextOccurrenceAt;
      if (!r.changed) return out(`task ${n} was not paused`);
      out(`task ${n} resumed; ${next ? `next occurrence ${new Date(next).toISOString()}` : `it is ${r.task.status}`}`);
    });
}
