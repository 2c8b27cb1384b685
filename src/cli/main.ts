// `tsched <command>`: the command line over the SDK. Human output by default, `--json` for scripts (JSON
// only on stdout). Exit codes: 0 ok, 1 task failed (--wait) or unexpected error, 2 usage error, 3 server
// unreachable, 4 refused by the server (4xx), 5 server error (5xx).

import { Command, CommanderError } from 'commander';
import type { LogChunk, Task } from '../client/index.js';
import { TschedClient } from '../client/index.js';
import { isTerminalTaskStatus, TASK_STATUSES, type TaskStatus } from '../domain/status.js';
import { describeSource, maskToken, readConfig, resolveConfig } from './config.js';
import { runServer, runUp, runWorker } from './daemons.js';
import { type ErrorContext, EXIT, renderError, UsageError } from './errors.js';
import { eventTable, explanationText, taskDetail, taskTable, workerTable } from './format.js';
import { registerScheduleCommands } from './schedule.js';
import { type SubmitFlags, taskFromFlags } from './task-flags.js';

const VERSION = '0.1.0';

const out = (s: string): void => {
  process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
};
const note = (s: string): void => {
  process.stderr.write(s.endsWith('\n') ? s : `${s}\n`);
};
const json = (v: unknown): void => out(JSON.stringify(v, null, 2));

interface Globals {
  server?: string;
  token?: string;
}

const collect = (v: string, prev: unknown): string[] => [...(Array.isArray(prev) ? prev : []), v];

/** Maps a task field path to the submit flag that sets it, so flag users see the flag they typed. */
const FLAG_FOR_FIELD: Array<[string, string]> = [
  ['resources.portNames', '--port-name'],
  ['resources.category', '--category'],
  ['resources.cpus', '--cpus'],
  ['resources.memory', '--memory'],
  ['resources.ports', '--ports'],
  ['retry.noRetryExitCodes', '--no-retry-exit-code'],
  ['schedule.timezone', '--timezone'],
  ['schedule.cron', '--cron'],
  ['schedule.at', '--at'],
  ['schedule.on', '--on'],
  ['schedule', '--schedule'],
  ['executionCap', '--cap'],
  ['delayTolerance', '--delay-tolerance'],
  ['totalAttempts', '--attempts'],
  ['priority', '--priority'],
  ['startAt', '--start-at'],
  ['image', '--image'],
  ['env', '--env'],
  ['name', '--name'],
];

function flagFor(path: string): string | null {
  for (const [field, flag] of FLAG_FOR_FIELD)
    if (path === field || path.startsWith(`${field}.`) || path.startsWith(`${field}[`)) return flag;
  return null;
}

function parseId(v: string, what = 'task'): number {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new UsageError(`expected a ${what} id (a positive integer), got "${v}"`);
  return Number(v);
}

export function buildProgram(ctx: ErrorContext): Command {
  const program = new Command('tsched');
  program
    .description('tsched: submit commands and scripts, run them on workers under their limits, and see what happened.')
    .version(VERSION, '-V, --version')
    .option('--server <url>', 'server URL (env TSCHED_URL; default from the config file, else http://127.0.0.1:7420)')
    .option('--token <token>', 'bearer token (env TSCHED_TOKEN; default from the config file)')
    .enablePositionalOptions()
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .addHelpText(
      'after',
      '\nExit codes: 0 ok, 1 task failed (submit --wait) or unexpected error, 2 usage error (bad flags or manifest),\n' +
        '            3 server unreachable, 4 refused by the server (4xx), 5 server error (5xx).\n' +
        'Config: flags, then TSCHED_URL/TSCHED_TOKEN, then the config file `tsched up` writes ($TSCHED_CONFIG,\n' +
        '        else $XDG_CONFIG_HOME/tsched/config.json, else ~/.config/tsched/config.json), then the default URL.',
    );

  /** Every subcommand also takes --server/--token after its name, and reports errors through main. */
  const sub = (name: string, parent: Command = program): Command =>
    parent
      .command(name)
      .option('--server <url>', 'server URL')
      .option('--token <token>', 'bearer token')
      .exitOverride()
      .showHelpAfterError('(run with --help for usage)');

  const globals = (cmd: Command): Globals => {
    const merged: Globals = {};
    // Nearest command wins: `tsched ls --server X` beats `tsched --server Y ls`.
    for (let c: Command | null = cmd; c; c = c.parent) {
      const o = c.opts() as Globals;
      merged.server ??= o.server;
      merged.token ??= o.token;
    }
    return merged;
  };

  const client = (cmd: Command): TschedClient => {
    const cfg = resolveConfig(globals(cmd));
    ctx.urlSource = describeSource(cfg.urlSource, 'url', cfg.configPath);
    ctx.tokenSource = describeSource(cfg.tokenSource, 'token', cfg.configPath);
    ctx.hasToken = cfg.token !== undefined;
    return new TschedClient({ url: cfg.url, ...(cfg.token ? { token: cfg.token } : {}) });
  };

  // ---- daemons
  sub('up')
    .description(
      'start tsched on this machine: API, scheduler and a local worker, with SQLite under --data-dir; writes the CLI config file',
    )
    .option('--port <port>', 'TCP port (0 picks a free one)', '7420')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--data-dir <dir>', 'where the database and run directories live', './.tsched')
    .option('--cpus <cores>', 'cores the local worker offers (default: all)')
    .option('--memory <size>', 'memory the local worker offers, e.g. 4GiB (default: most of RAM)')
    .option('--executors <list>', 'shell,docker (default: shell, plus docker when available)')
    .option('--no-local-worker', 'run only the API and scheduler; tasks wait for remote workers (tsched worker)')
    .option('--lease <duration>', 'a worker silent this long is lost and its runs are retried elsewhere', '15s')
    .option('--cap-grace <duration>', 'past a run\u2019s execution cap, how long the server waits for the worker to end it', '15s')
    .option('--placement <strategy>', 'binpack (fill workers, keep big holes) or spread (balance load)', 'binpack')
    .option('--urgency-window <duration>', 'a task this close to its start deadline is promoted to urgent', '1m')
    .option('--deferral-threshold <fraction>', 'above this cluster utilization, delayable work waits for off-peak', '0.8')
    .option('--json', 'print {url, token, workerToken, dataDir, configPath} as one JSON line')
    .action((f) => runUp(f));

  sub('server')
    .description('run a cluster replica over PostgreSQL (every replica serves the API; one elected leader schedules)')
    .option('--db <url>', 'PostgreSQL URL, e.g. postgres://postgres@127.0.0.1:5432/tsched (env TSCHED_DB)')
    .option('--listen <host:port>', 'address to listen on', '0.0.0.0:7420')
    .option('--advertise-url <url>', 'URL other replicas and workers use to reach this one')
    .option('--admin-token <token>', 'bootstrap admin token, registered at start (env TSCHED_ADMIN_TOKEN)')
    .option('--worker-token <token>', 'bootstrap worker token, registered at start (env TSCHED_WORKER_TOKEN)')
    .option('--webhook-secret <secret>', 'HMAC key for webhook signatures, the same on every replica (env TSCHED_WEBHOOK_SECRET)')
    .option('--lease <duration>', 'a worker silent this long is lost and its runs are retried elsewhere', '15s')
    .option('--cap-grace <duration>', 'past a run\u2019s execution cap, how long the server waits for the worker to end it', '15s')
    .option('--placement <strategy>', 'binpack (fill workers, keep big holes) or spread (balance load)', 'binpack')
    .option('--urgency-window <duration>', 'a task this close to its start deadline is promoted to urgent', '1m')
    .option('--deferral-threshold <fraction>', 'above this cluster utilization, delayable work waits for off-peak', '0.8')
    .option('--leader-ttl <duration>', 'scheduling leader lease; a dead leader is replaced within about 4/3 of it', '3s')
    .option('--db-pool <n>', 'PostgreSQL connections of this replica', '10')
    .option('--statement-timeout <duration>', 'longest one SQL statement may run (0 for none)', '30s')
    .option('--json', 'print {url, token, workerToken} as JSON')
    .action((f) => runServer(f));

  const worker = sub('worker')
    .description('run a worker agent that executes tasks for a server (or: tsched worker drain <name>)')
    .option('--name <name>', 'worker name, unique in the cluster (default: host name)')
    .option('--cpus <cores>', 'cores to offer (default: all)')
    .option('--memory <size>', 'memory to offer, e.g. 8GiB (default: most of RAM)')
    .option('--ports <from-to>', 'port range to hand out to tasks, e.g. 20000-20999')
    .option('--labels <k=v,...>', 'labels that task constraints match')
    .option('--executors <list>', 'shell,docker')
    .option('--work-dir <dir>', 'where run directories live (default: $TMPDIR/tsched-worker-<name>)')
    .option('--scripts-root <dir>', 'directory that task scriptPath values are relative to')
    .option('--keep-failed', 'keep the run directories of failed runs for inspection')
    .option('--runs-dir <dir>', 'where per-run directories are made (e.g. on tmpfs for many short tasks; default <work-dir>/runs)')
    .option('--kill-grace <duration>', 'between SIGTERM and SIGKILL when a run is stopped', '10s')
    .option('--pull-policy <policy>', 'docker images: if-not-present, always or never', 'if-not-present')
    .option('--docker-allow-privileged', 'let docker tasks run privileged (off by default)')
    .option('--docker-allow-host-network', 'let docker tasks use the host network (off by default)')
    .option('--docker-allow-socket', 'mount the Docker socket into task containers (off by default)')
    .option('--drain-timeout <seconds>', 'on Ctrl-C, how long to let running tasks finish', '30')
    .option('--json', 'print {name, server, workDir} as JSON')
    .action((f, cmd: Command) => runWorker(f, globals(cmd.parent ?? cmd)));

  sub('drain', worker)
    .description('drain a worker (by name or id): it takes nothing new; running tasks finish')
    .argument('<name-or-id>')
    .option('--json', 'print the worker as JSON')
    .action(async (name: string, f: { json?: boolean }, cmd: Command) => {
      ctx.subject = `worker ${name}`;
      ctx.subjectCode = 'WORKER_NOT_FOUND';
      const w = await client(cmd).drain(name);
      if (f.json) json(w);
      else out(`worker ${w.name} is ${w.state}: it takes no new tasks; running ones finish`);
    });

  // ---- tasks
  sub('submit')
    .description('submit a task: tsched submit [flags] -- <command> [args...], or tsched submit -f manifest.yaml')
    .argument('[command...]', 'the command and its arguments (put them after --)')
    .option('-f, --file <manifest>', 'a YAML or JSON manifest (- reads stdin); a list or {tasks: [...]} submits a batch')
    .option('--name <name>', 'a name to recognise the task by')
    .option('--cpus <cores>', 'CPU cores, fractional allowed (e.g. 0.5, 2)')
    .option('--memory <size>', 'memory, e.g. 512MiB, 1GiB')
    .option('--ports <n>', 'number of anonymous ports (exposed as $PORT0, $PORT1, …)')
    .option('--port-name <name>', 'a named port, exposed as $PORT_<NAME> (repeatable)', collect)
    .option('--category <c>', 'basic | regular | premium (a preset of cpus and memory)')
    .option('--attempts <n>', 'total attempts, the first included (default 3)')
    .option('--cap <duration>', 'execution cap, counted from allocation (e.g. 10m; default 1h)')
    .option('--delay-tolerance <duration>', 'how long the start may be delayed (e.g. 5m; default 1h)')
    .option('--tolerance <duration>', 'alias of --delay-tolerance')
    .option('--priority <p>', 'urgent | high | normal | low | 0-100 (default normal)')
    .option('--image <image>', 'run in this Docker image (docker executor)')
    .option('--env <K=V>', 'environment variable (repeatable)', collect)
    .option('--label <k=v>', 'label (repeatable, or k=v,k2=v2)', collect)
    .option('--constraint <k=v>', 'only run on workers with this label (repeatable)', collect)
    .option('--shell', 'run the command through /bin/sh -c')
    .option('--script <file>', 'an inline script: the file content is sent with the task')
    .option('--script-path <path>', 'a script under the workers\u2019 scripts root')
    .option('--start-at <iso>', 'do not start before this instant (ISO-8601)')
    .option('--schedule <type>', 'once | daily | weekly | monthly | annually | cron')
    .option('--at <HH:MM>', 'local time of day for daily/weekly/monthly/annually')
    .option('--on <days>', 'weekly: mon,wed; monthly: 15 or last; annually: 12-25')
    .option('--cron <expr>', 'cron expression (implies --schedule cron)')
    .option('--timezone <zone>', 'IANA time zone of the schedule (default UTC)')
    .option('--no-retry-exit-code <n>', 'fail at once on this exit code, whatever attempts remain (repeatable)', collect)
    .option('--idempotency-key <key>', 'a repeated submit with the same key returns the original task (default: random)')
    .option('--wait', 'wait until the task ends; exit 0 if it is done, 1 otherwise')
    .option('--json', 'print the whole task (or list of tasks) as JSON')
    .passThroughOptions()
    .action(
      async (
        command: string[],
        f: SubmitFlags & { file?: string; idempotencyKey?: string; wait?: boolean; json?: boolean },
        cmd: Command,
      ) => {
        // Loaded here, not at start: TypeBox and YAML cost ~120 ms that other commands need not pay.
        const [{ readManifestFile }, { validateTasks }] = await Promise.all([import('./manifest.js'), import('./validate.js')]);
        let inputs: ReturnType<typeof taskFromFlags>[];
        let batch: boolean;
        if (f.file !== undefined) {
          const taskFlags = Object.keys(f).filter(
            (k) => !['file', 'idempotencyKey', 'wait', 'json', 'server', 'token', 'retryExitCode'].includes(k),
          );
          if (Array.isArray(f.retryExitCode)) taskFlags.push('noRetryExitCode');
          if (command.length > 0 || taskFlags.length > 0)
            throw new UsageError(
              '-f: a manifest holds the whole task; do not combine it with a command or task flags (only --wait, --json, --idempotency-key)',
            );
          ({ tasks: inputs, batch } = readManifestFile(f.file));
        } else {
          const input = taskFromFlags(command, f);
          const issues = validateTasks([input], () => '');
          if (issues.length > 0) {
            throw new UsageError(
              'the task is invalid (nothing was sent):',
              issues.map((i) => ({ path: flagFor(i.path) ? `${flagFor(i.path)} (${i.path})` : i.path, message: i.message })),
            );
          }
          inputs = [input];
          batch = false;
        }
        if (f.wait && inputs.some((t) => (t.schedule?.type ?? t.schedulingType ?? 'once') !== 'once'))
          throw new UsageError('--wait: a recurring task never ends; wait for one of its occurrences instead (tsched ls)');

        const c = client(cmd);
        const key = f.idempotencyKey ? { idempotencyKey: f.idempotencyKey } : {};
        const r = await c.submitDetailed(batch ? inputs : (inputs[0] as (typeof inputs)[0]), key);
        if (r.replayed) note(`tsched: idempotency key ${f.idempotencyKey ?? ''} was used before: nothing new was created`);
        if (!f.wait) {
          if (f.json) json(batch ? r.tasks : r.tasks[0]);
          else out(r.tasks.map((t) => String(t.id)).join('\n'));
          return;
        }
        if (!f.json) out(r.tasks.map((t) => String(t.id)).join('\n'));
        const finals = await waitForTasks(c, r.tasks);
        if (f.json) json(batch ? finals : finals[0]);
        for (const t of finals) note(`task ${t.id} ${t.status}${t.lastError ? `: ${t.lastError}` : ''}`);
        if (finals.some((t) => t.status !== 'done')) process.exitCode = EXIT.FAILED;
      },
    );

  sub('ls')
    .description('list tasks, newest first')
    .option('--status <list>', `only these statuses (comma-separated): ${TASK_STATUSES.join(', ')}`)
    .option('--limit <n>', 'at most this many (1-1000)', '50')
    .option('--cursor <cursor>', 'the next page, from a previous ls')
    .option('--all', "every owner's tasks (admin token)")
    .option('--json', 'print {tasks, next} as JSON')
    .action(async (f: { status?: string; limit: string; cursor?: string; all?: boolean; json?: boolean }, cmd: Command) => {
      const status = f.status === undefined ? undefined : parseStatuses(f.status);
      if (!/^\d+$/.test(f.limit) || Number(f.limit) < 1 || Number(f.limit) > 1000)
        throw new UsageError(`--limit: expected an integer from 1 to 1000, got "${f.limit}"`);
      const page = await client(cmd).listTasks({
        ...(status ? { status } : {}),
        limit: Number(f.limit),
        ...(f.cursor ? { cursor: f.cursor } : {}),
        ...(f.all ? { all: true } : {}),
      });
      if (f.json) return json(page);
      out(page.tasks.length ? taskTable(page.tasks) : 'no tasks');
      if (page.next) note(`more: tsched ls --cursor ${page.next}${f.status ? ` --status ${f.status}` : ''}`);
    });

  sub('show')
    .description('every field of a task, every attempt, why it waits, and its events')
    .argument('<id>')
    .option('--json', 'print {task, runs, explanation, events} as JSON')
    .action(async (id: string, f: { json?: boolean }, cmd: Command) => {
      const n = parseId(id);
      ctx.subject = `task ${n}`;
      ctx.subjectCode = 'TASK_NOT_FOUND';
      const c = client(cmd);
      const [d, events] = await Promise.all([c.getTask(n), c.events(n)]);
      if (f.json) return json({ ...d, events });
      out(taskDetail(d.task, d.runs, d.explanation, events));
    });

  sub('logs')
    .description('output of the latest attempt (or --run); -f follows it live until the run ends')
    .argument('<id>')
    .option('-f, --follow', 'stream new output until the run ends')
    .option('--run <id>', 'a run id (see tsched show) instead of the latest')
    .option('--json', 'print chunks as JSON (one object per line with -f)')
    .action(async (id: string, f: { follow?: boolean; run?: string; json?: boolean }, cmd: Command) => {
      const n = parseId(id);
      ctx.subject = `task ${n}`;
      ctx.subjectCode = 'TASK_NOT_FOUND';
      const run = f.run === undefined ? undefined : parseId(f.run, 'run');
      const c = client(cmd);
      if (f.follow) {
        const abort = new AbortController();
        const stop = () => abort.abort();
        process.once('SIGINT', stop);
        try {
          for await (const item of c.followLogs(n, { ...(run ? { run } : {}), signal: abort.signal })) {
            if (f.json) {
              process.stdout.write(`${JSON.stringify(item)}\n`);
            } else if ('end' in item) {
              if (item.end.runId === null)
                note(`[tsched] task ${n} ended without running${item.end.status ? ` (${item.end.status})` : ''}`);
              else
                note(
                  `[tsched] run ${item.end.runId} ended: ${item.end.outcome ?? 'unknown'}${item.end.status ? `; task ${item.end.status}` : ''}`,
                );
            } else if ('run' in item) {
              note(`[tsched] a new attempt started: run ${item.run.runId}`);
            } else writeChunk(item);
          }
        } catch (err) {
          if (!abort.signal.aborted) throw err;
        } finally {
          process.off('SIGINT', stop);
        }
        return;
      }
      const chunks: LogChunk[] = [];
      let offset = 0;
      let runId: number | null = run ?? null;
      let ended = false;
      for (;;) {
        const page = await c.logs(n, { ...(runId ? { run: runId } : {}), offset });
        runId = page.runId;
        ended = page.ended;
        if (f.json) chunks.push(...page.chunks);
        else for (const ch of page.chunks) writeChunk(ch);
        if (page.chunks.length === 0 || page.nextOffset <= offset || runId === null) break;
        offset = page.nextOffset;
      }
      if (f.json) return json({ runId, chunks, ended });
      if (runId === null) note(`task ${n} has not run yet (tsched logs -f ${n} waits for it)`);
    });

  sub('cancel')
    .description('cancel a task: a waiting one never starts, a running one is stopped')
    .argument('<id>')
    .option('--json', 'print {task, changed} as JSON')
    .action(async (id: string, f: { json?: boolean }, cmd: Command) => {
      const n = parseId(id);
      ctx.subject = `task ${n}`;
      ctx.subjectCode = 'TASK_NOT_FOUND';
      const r = await client(cmd).cancel(n);
      if (f.json) return json(r);
      out(r.changed ? `task ${n} cancelled` : `task ${n} was already ${r.task.status}`);
    });

  sub('retry')
    .description('queue a failed or cancelled task again, with fresh attempts')
    .argument('<id>')
    .option('--json', 'print the task as JSON')
    .action(async (id: string, f: { json?: boolean }, cmd: Command) => {
      const n = parseId(id);
      ctx.subject = `task ${n}`;
      ctx.subjectCode = 'TASK_NOT_FOUND';
      const t = await client(cmd).retry(n);
      if (f.json) return json(t);
      out(`task ${n} is ${t.status} again (${t.totalAttempts} attempts)`);
    });

  sub('explain')
    .description('why a waiting task has not started, and when it might')
    .argument('<id>')
    .option('--json', 'print {explanation} as JSON')
    .action(async (id: string, f: { json?: boolean }, cmd: Command) => {
      const n = parseId(id);
      ctx.subject = `task ${n}`;
      ctx.subjectCode = 'TASK_NOT_FOUND';
      const c = client(cmd);
      const x = await c.explain(n);
      if (f.json) return json({ explanation: x });
      if (x) return out(explanationText(x));
      const { task } = await c.getTask(n);
      out(`task ${n} is not waiting (it is ${task.status.replace('_', ' ')}); see tsched show ${n}`);
    });

  sub('workers')
    .description('the worker nodes: state, capacity, what is allocated and free, how limits are enforced')
    .option('--json', 'print the workers as JSON')
    .action(async (f: { json?: boolean }, cmd: Command) => {
      const ws = await client(cmd).workers();
      if (f.json) return json(ws);
      out(ws.length ? workerTable(ws) : 'no workers (start one with tsched worker, or tsched up runs a local one)');
      // Cluster mode: say which replica schedules (the answering one may be a follower).
      const h = await client(cmd)
        .health()
        .catch(() => null);
      if (h?.replica !== undefined)
        out(
          `\nscheduling leader: ${h.leaderReplica ?? 'none right now (election in progress)'}${h.epoch != null ? ` (epoch ${h.epoch})` : ''}`,
        );
    });

  sub('events')
    .description('the audit trail of a task: every change, who made it and why')
    .argument('<id>')
    .option('--json', 'print the events as JSON')
    .action(async (id: string, f: { json?: boolean }, cmd: Command) => {
      const n = parseId(id);
      ctx.subject = `task ${n}`;
      ctx.subjectCode = 'TASK_NOT_FOUND';
      const events = await client(cmd).events(n);
      if (f.json) return json(events);
      out(events.length ? eventTable(events) : `task ${n} has no events`);
    });

  registerScheduleCommands({ program, sub, client, ctx, out, json, parseId });

  sub('config')
    .description('what server URL and token the CLI will use, and where each came from')
    .option('--show-token', 'print the token in full')
    .option('--json', 'print it as JSON')
    .action((f: { showToken?: boolean; json?: boolean }, cmd: Command) => {
      const cfg = resolveConfig(globals(cmd));
      const file = readConfigSafe(cfg.configPath);
      const token = f.showToken ? (cfg.token ?? null) : maskToken(cfg.token);
      if (f.json) {
        return json({
          url: cfg.url,
          urlSource: cfg.urlSource,
          token,
          tokenSource: cfg.tokenSource,
          configPath: cfg.configPath,
          configFileExists: file !== null,
        });
      }
      out(
        [
          `server: ${cfg.url}   (from ${describeSource(cfg.urlSource, 'url', cfg.configPath)})`,
          `token:  ${token ?? '(none)'}   (from ${describeSource(cfg.tokenSource, 'token', cfg.configPath)})`,
          `config file: ${cfg.configPath}${file === null ? ' (does not exist; tsched up writes it)' : ''}`,
        ].join('\n'),
      );
    });

  return program;
}

function readConfigSafe(path: string): object | null {
  try {
    const c = readConfig(path);
    return Object.keys(c).length > 0 ? c : null;
  } catch {
    return null;
  }
}

function parseStatuses(v: string): TaskStatus[] {
  const list = v
    .split(',')
    .map((s) => s.trim().toLowerCase().replace('-', '_'))
    .filter(Boolean)
    .map((s) => (s === 'running' ? 'in_progress' : s));
  for (const s of list)
    if (!TASK_STATUSES.includes(s as TaskStatus))
      throw new UsageError(`--status: expected statuses among ${TASK_STATUSES.join(', ')}, got "${s}"`);
  return list as TaskStatus[];
}

function writeChunk(ch: LogChunk): void {
  if (ch.stream === 'stdout') process.stdout.write(ch.data);
  else if (ch.stream === 'stderr') process.stderr.write(ch.data);
  else process.stderr.write(`[tsched] ${ch.data}${ch.data.endsWith('\n') ? '' : '\n'}`);
}

/** Polls until every task is done, failed or cancelled. Backs off from 200 ms to 2 s. */
async function waitForTasks(c: TschedClient, tasks: Task[]): Promise<Task[]> {
  const finals = new Map<number, Task>();
  let delay = 200;
  for (;;) {
    for (const t of tasks) {
      if (finals.has(t.id)) continue;
      const { task } = await c.getTask(t.id);
      if (isTerminalTaskStatus(task.status)) finals.set(t.id, task);
    }
    if (finals.size === tasks.length) return tasks.map((t) => finals.get(t.id) as Task);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(2000, Math.round(delay * 1.5));
  }
}

export async function main(argv: string[]): Promise<void> {
  const ctx: ErrorContext = {};
  const program = buildProgram(ctx);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed its message (or the help/version).
      const ok = err.code === 'commander.helpDisplayed' || err.code === 'commander.version';
      process.exitCode = ok ? EXIT.OK : EXIT.USAGE;
      return;
    }
    const r = renderError(err, ctx);
    process.stderr.write(`tsched: ${r.message}\n`);
    process.exitCode = r.exitCode;
  }
}
