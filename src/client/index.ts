// The typed SDK over tsched's REST API v1. The CLI and the dashboard use it; so can any Node 20+ or browser
// program. It throws ApiError when the server answered with an error body and ConnectionError when no
// answer came, so callers can tell "refused" from "unreachable" and print a useful message.

import type { FieldIssue } from '../domain/errors.js';
import type { RunOutcome, TaskStatus } from '../domain/status.js';
import type { Run, Task, TaskEventRecord } from '../domain/task.js';
import type { TaskInput } from '../domain/task-spec.js';
import type { Worker, WorkerWithLoad } from '../domain/worker.js';
import type { LogChunk } from '../store/port.js';
import { SseParser } from './sse.js';

/** One piece of a run's output, as the API returns it (the store's shape). */
export type { LogChunk } from '../store/port.js';
export type { FieldIssue, Run, RunOutcome, Task, TaskEventRecord, TaskInput, TaskStatus, Worker, WorkerWithLoad };

export interface LogPage {
  runId: number | null;
  chunks: LogChunk[];
  nextOffset: number;
  ended: boolean;
}

/** The last item of a followed log: the run ended with this outcome (runId null: the task never ran). */
export interface LogEnd {
  end: { outcome: RunOutcome | null; runId: number | null; status?: TaskStatus | null };
}

/** A followed log moved on to a newer run of the task (a retry started). */
export interface LogRunSwitch {
  run: { runId: number };
}

export type FollowItem = LogChunk | LogEnd | LogRunSwitch;

export interface ExplanationReason {
  code: string;
  /** How many workers this reason ruled out. */
  workers: number;
  detail?: string;
}

/** Why a waiting task has not started, and when it might. */
export interface Explanation {
  message: string;
  reasons: ExplanationReason[];
  /** Position in the queue, 1 = next. */
  rank: number | null;
  band: string | number | null;
  estimatedStart: number | null;
}

export interface TaskDetail {
  task: Task;
  runs: Run[];
  explanation: Explanation | null;
}

export interface Health {
  ok: boolean;
  version: string;
  store: 'sqlite' | 'postgres';
  leader: boolean;
  /** Cluster mode: the replica that answered, the scheduling leader (null while none holds the lease), the fencing epoch. */
  replica?: string;
  leaderReplica?: string | null;
  epoch?: number | null;
}

export interface ListQuery {
  status?: TaskStatus[] | string;
  limit?: number;
  cursor?: string | null;
  all?: boolean;
  parent?: number;
}

export interface ClientOptions {
  /** Base URL of the server, e.g. http://127.0.0.1:7420. */
  url: string;
  /** Bearer token. */
  token?: string;
  /** A fetch implementation; default the global one. */
  fetch?: typeof fetch;
  /** Per-request timeout, ms (default 30 s). Followed logs have none. */
  timeoutMs?: number;
}

export interface SubmitOptions {
  /** Default: a random key, so that the one automatic retry after a network failure is safe. */
  idempotencyKey?: string;
}

export interface SubmitResult {
  tasks: Task[];
  /** The server had already accepted this idempotency key: nothing new was created. */
  replayed: boolean;
}

/** The server answered with an error. `code` is the stable code from the error catalogue. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly issues: FieldIssue[];
  readonly details: Record<string, unknown> | undefined;
  constructor(status: number, code: string, message: string, issues: FieldIssue[] = [], details?: Record<string, unknown>) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.issues = issues;
    this.details = details;
  }
}

export type ConnectionFailure = 'refused' | 'not_found' | 'timeout' | 'reset' | 'aborted' | 'other';

/** No answer came from the server: nothing listening, DNS failure, timeout, or the connection dropped. */
export class ConnectionError extends Error {
  readonly url: string;
  readonly kind: ConnectionFailure;
  override readonly cause: unknown;
  constructor(url: string, cause: unknown, kind: ConnectionFailure = classify(cause)) {
    super(`cannot reach ${url}: ${describe(kind, cause)}`);
    this.name = 'ConnectionError';
    this.url = url;
    this.kind = kind;
    this.cause = cause;
  }
}

function classify(cause: unknown): ConnectionFailure {
  const e = cause as { name?: string; code?: string; cause?: { code?: string } } | undefined;
  if (e?.name === 'TimeoutError') return 'timeout';
  if (e?.name === 'AbortError') return 'aborted';
  const code = e?.code ?? e?.cause?.code;
  if (code === 'ECONNREFUSED') return 'refused';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'not_found';
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') return 'reset';
  return 'other';
}

function describe(kind: ConnectionFailure, cause: unknown): string {
  switch (kind) {
    case 'refused':
      return 'connection refused (nothing is listening there)';
    case 'not_found':
      return 'host name not found';
    case 'timeout':
      return 'no answer in time';
    case 'reset':
      return 'the connection was dropped';
    case 'aborted':
      return 'aborted';
    default: {
      const e = cause as { message?: string; cause?: { message?: string } } | undefined;
      return e?.cause?.message ?? e?.message ?? String(cause);
    }
  }
}

function randomKey(): string {
  return globalThis.crypto.randomUUID();
}

interface RequestOptions {
  method?: string;
  body?: unknown;
  headers?: Record<string, string>;
  /** Retry once on a connection failure (GETs and idempotent submits only). */
  retry?: boolean;
}

export class TschedClient {
  readonly url: string;
  private readonly token: string | undefined;
  private readonly fetchImpl: typeof fetch;
  private readonly timeoutMs: number;

  constructor(opts: ClientOptions) {
    this.url = opts.url.replace(/\/+$/, '');
    this.token = opts.token;
    this.fetchImpl = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  /** Submits one task (→ Task) or a batch, all or nothing (→ Task[]). */
  submit(input: TaskInput, opts?: SubmitOptions): Promise<Task>;
  submit(inputs: TaskInput[], opts?: SubmitOptions): Promise<Task[]>;
  async submit(input: TaskInput | TaskInput[], opts: SubmitOptions = {}): Promise<Task | Task[]> {
    const r = await this.submitDetailed(input, opts);
    return Array.isArray(input) ? r.tasks : (r.tasks[0] as Task);
  }

  /** Like submit, and also says whether the idempotency key replayed an earlier submit. */
  async submitDetailed(input: TaskInput | TaskInput[], opts: SubmitOptions = {}): Promise<SubmitResult> {
    const body = Array.isArray(input) ? { tasks: input } : input;
    const key = opts.idempotencyKey ?? randomKey();
    const { data, headers } = await this.request<{ task?: Task; tasks?: Task[] }>('/v1/tasks', {
      method: 'POST',
      body,
      headers: { 'idempotency-key': key },
      retry: true,
    });
    const tasks = data.tasks ?? (data.task ? [data.task] : []);
    return { tasks, replayed: headers.get('idempotent-replayed') === 'true' };
  }

  async listTasks(q: ListQuery = {}): Promise<{ tasks: Task[]; next: string | null }> {
    const p = new URLSearchParams();
    if (q.status !== undefined) p.set('status', Array.isArray(q.status) ? q.status.join(',') : q.status);
    if (q.limit !== undefined) p.set('limit', String(q.limit));
    if (q.cursor) p.set('cursor', q.cursor);
    if (q.all) p.set('all', 'true');
    if (q.parent !== undefined) p.set('parent', String(q.parent));
    const qs = p.toString();
    return (await this.get<{ tasks: Task[]; next: string | null }>(`/v1/tasks${qs ? `?${qs}` : ''}`)).data;
  }

  async getTask(id: number): Promise<TaskDetail> {
    return (await this.get<TaskDetail>(`/v1/tasks/${taskId(id)}`)).data;
  }

  async events(id: number): Promise<TaskEventRecord[]> {
    return (await this.get<{ events: TaskEventRecord[] }>(`/v1/tasks/${taskId(id)}/events`)).data.events;
  }

  /** One page of a run's log (default the latest run) from a byte offset. */
  async logs(id: number, opts: { run?: number; offset?: number; limit?: number } = {}): Promise<LogPage> {
    const p = new URLSearchParams();
    if (opts.run !== undefined) p.set('run', String(opts.run));
    if (opts.offset !== undefined) p.set('offset', String(opts.offset));
    if (opts.limit !== undefined) p.set('limit', String(opts.limit));
    const qs = p.toString();
    return (await this.get<LogPage>(`/v1/tasks/${taskId(id)}/logs${qs ? `?${qs}` : ''}`)).data;
  }

  /**
   * Follows a task's log live (server-sent events) until it ends; the last item is `{ end }`. If the task
   * has not run yet, the server waits for its first run; when a retry starts, `{ run }` announces the new
   * run and its output follows. A dropped stream is resumed from the last byte received.
   */
  async *followLogs(id: number, opts: { run?: number; offset?: number; signal?: AbortSignal } = {}): AsyncGenerator<FollowItem> {
    let run = opts.run;
    let offset = opts.offset;
    let resumes = 0;
    for (;;) {
      const p = new URLSearchParams({ follow: 'true' });
      if (run !== undefined) p.set('run', String(run));
      if (offset !== undefined) p.set('offset', String(offset));
      const path = `/v1/tasks/${taskId(id)}/logs?${p}`;
      const res = await this.send(path, { headers: { accept: 'text/event-stream' } }, opts.signal ?? null);
      if (!res.ok) throw await errorFrom(res);
      if (!res.body) throw new ConnectionError(this.url, new Error('the log stream has no body'), 'other');
      const parser = new SseParser();
      const decoder = new TextDecoder();
      const reader = res.body.getReader();
      let progressed = false;
      try {
        for (;;) {
          let step: ReadableStreamReadResult<Uint8Array>;
          try {
            step = await reader.read();
          } catch (err) {
            if (opts.signal?.aborted) throw new ConnectionError(this.url, err, 'aborted');
            break; // dropped: resume below
          }
          if (step.done) break;
          for (const msg of parser.push(decoder.decode(step.value, { stream: true }))) {
            if (msg.event === 'log') {
              const chunk = JSON.parse(msg.data) as LogChunk;
              run = chunk.runId;
              offset = chunk.offset + utf8Length(chunk.data);
              progressed = true;
              yield chunk;
            } else if (msg.event === 'run') {
              const sw = JSON.parse(msg.data) as { runId: number };
              run = sw.runId;
              offset = 0;
              progressed = true;
              yield { run: { runId: sw.runId } };
            } else if (msg.event === 'end') {
              const end = (msg.data ? JSON.parse(msg.data) : {}) as Partial<LogEnd['end']>;
              const item: LogEnd = { end: { outcome: end.outcome ?? null, runId: end.runId ?? null } };
              if (end.status !== undefined) item.end.status = end.status;
              yield item;
              return;
            }
          }
        }
      } finally {
        reader.releaseLock();
        res.body.cancel().catch(() => {});
      }
      // The stream ended without an `end` event: the connection dropped (or a proxy cut it). Resume.
      if (progressed) resumes = 0;
      if (++resumes > 3) throw new ConnectionError(this.url, new Error('the log stream keeps closing before the run ends'), 'reset');
      await sleep(200 * resumes);
    }
  }

  async cancel(id: number): Promise<{ task: Task; changed: boolean }> {
    return (await this.request<{ task: Task; changed: boolean }>(`/v1/tasks/${taskId(id)}/cancel`, { method: 'POST' })).data;
  }

  async retry(id: number): Promise<Task> {
    return (await this.request<{ task: Task }>(`/v1/tasks/${taskId(id)}/retry`, { method: 'POST' })).data.task;
  }

  async explain(id: number): Promise<Explanation | null> {
    return (await this.get<{ explanation: Explanation | null }>(`/v1/tasks/${taskId(id)}/explain`)).data.explanation;
  }

  async workers(): Promise<WorkerWithLoad[]> {
    return (await this.get<{ workers: WorkerWithLoad[] }>('/v1/workers')).data.workers;
  }

  /** Drains a worker, by id or by name: it takes nothing new and its running tasks finish. */
  async drain(idOrName: string): Promise<Worker> {
    return (await this.request<{ worker: Worker }>(`/v1/workers/${encodeURIComponent(idOrName)}/drain`, { method: 'POST' })).data.worker;
  }

  async health(): Promise<Health> {
    return (await this.get<Health>('/healthz')).data;
  }

  // ---- recurring tasks

  /** A recurring task's next occurrences (in its zone and UTC). 409 NOT_RECURRING for a task that runs once. */
  async nextOccurrences(id: number, count = 10): Promise<NextOccurrences> {
    return (await this.get<NextOccurrences>(`/v1/tasks/${taskId(id)}/next?count=${count}`)).data;
  }

  async pause(id: number): Promise<{ task: Task; changed: boolean }> {
    return (await this.request<{ task: Task; changed: boolean }>(`/v1/tasks/${taskId(id)}/pause`, { method: 'POST' })).data;
  }

  async resume(id: number): Promise<{ task: Task; changed: boolean }> {
    return (await this.request<{ task: Task; changed: boolean }>(`/v1/tasks/${taskId(id)}/resume`, { method: 'POST' })).data;
  }

  /** Replaces the schedule; it takes effect from the next occurrence. */
  async updateSchedule(id: number, schedule: NonNullable<TaskInput['schedule']>): Promise<Task> {
    return (await this.request<{ task: Task }>(`/v1/tasks/${taskId(id)}/schedule`, { method: 'PATCH', body: schedule })).data.task;
  }

  /** The next occurrences of a schedule, without a task (the CLI computes them locally instead). */
  async previewSchedule(
    schedule: NonNullable<TaskInput['schedule']>,
    opts: { count?: number; after?: string | number } = {},
  ): Promise<{ timezone: string; occurrences: OccurrenceEntry[] }> {
    return (
      await this.request<{ timezone: string; occurrences: OccurrenceEntry[] }>('/v1/schedules/preview', {
        method: 'POST',
        body: { schedule, ...opts },
      })
    ).data;
  }

  private get<T>(path: string) {
    return this.request<T>(path, { retry: true });
  }

  private async request<T>(path: string, opts: RequestOptions): Promise<{ data: T; headers: Headers }> {
    let res: Response;
    try {
      res = await this.send(path, opts, AbortSignal.timeout(this.timeoutMs));
    } catch (err) {
      if (!(err instanceof ConnectionError) || !opts.retry || err.kind === 'aborted') throw err;
      res = await this.send(path, opts, AbortSignal.timeout(this.timeoutMs));
    }
    if (!res.ok) throw await errorFrom(res);
    const text = await res.text();
    try {
      return { data: (text ? JSON.parse(text) : {}) as T, headers: res.headers };
    } catch {
      throw new ApiError(res.status, 'BAD_RESPONSE', `the server at ${this.url} answered ${path} with something that is not JSON`);
    }
  }

  private async send(path: string, opts: RequestOptions, signal: AbortSignal | null): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json', ...opts.headers };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const init: RequestInit = { method: opts.method ?? 'GET', headers, signal };
    if (opts.body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(opts.body);
    } else if (init.method === 'POST') {
      // Fastify refuses an empty body with content-type json; send an empty object instead.
      headers['content-type'] = 'application/json';
      init.body = '{}';
    }
    try {
      return await this.fetchImpl(this.url + path, init);
    } catch (err) {
      throw new ConnectionError(this.url, err);
    }
  }
}

async function errorFrom(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text) as {
      error?: { code?: string; message?: string; issues?: FieldIssue[]; details?: Record<string, unknown> };
    };
    if (body.error && typeof body.error.message === 'string') {
      return new ApiError(
        res.status,
        body.error.code ?? `HTTP_${res.status}`,
        body.error.message,
        body.error.issues ?? [],
        body.error.details,
      );
    }
  } catch {
    // not JSON: fall through
  }
  const snippet = text.trim().slice(0, 200);
  return new ApiError(res.status, `HTTP_${res.status}`, snippet || res.statusText || `HTTP ${res.status}`);
}

function taskId(id: number): string {
  if (!Number.isInteger(id) || id < 1) throw new TypeError(`expected a task id (a positive integer), got ${id}`);
  return String(id);
}

function utf8Length(s: string): number {
  return new TextEncoder().encode(s).length;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** One occurrence: epoch ms, ISO-8601 UTC, and ISO-8601 in the schedule's zone. */
export interface OccurrenceEntry {
  at: number;
  utc: string;
  local: string;
}

export interface NextOccurrences {
  taskId: number;
  status: TaskStatus;
  paused: boolean;
  timezone: string;
  occurrences: OccurrenceEntry[];
}
