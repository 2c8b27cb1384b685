// The worker protocol: HTTP/JSON with long-polling, batched both ways (like GitLab Runner's job requests).
// Any language can speak it. Every call carries `Authorization: Bearer <token>` (a worker or admin token).
//
//   POST /v1/workers/register            WorkerRegisterSchema → RegisterResponse
//        Same name → same worker id. Live runs of a previous life of this worker end `lost` and are retried;
//        their ids come back in `orphaned` so the worker can kill what it left behind.
//   POST /v1/workers/:id/poll            WorkerPollSchema → PollResponse
//        Long-poll: returns at once if assignments or cancels are pending, otherwise waits up to `wait` ms
//        and returns as soon as some arrive (a submit, a cancel or a drain wakes it). Also a heartbeat:
//        `running` extends the lease of those runs. A report (started, logs, results) may ride on the poll:
//        it is stored first and acked in the response, and the assignments its freed resources allowed
//        come back in the same response — one request per cycle instead of a report and a poll. Such a poll
//        does not park: it answers once the report is stored and the pass it kicked has ended.
//   POST /v1/workers/:id/report          WorkerReportSchema → ReportResponse
//        Batched starts, log chunks, results and heartbeats. Answered at once. Each item is acked on its own:
//        an item with a stale lease token is refused (code LEASE_STALE, the 409 of the single-item endpoints)
//        and changes nothing. A worker must keep a result until it is acked (ok, or refused as stale).
//   POST /v1/workers/:id/drain           → Worker: takes nothing new; running runs finish.
//
// Errors are the API's ErrorBody with a stable code. 404 WORKER_NOT_FOUND on poll/report means: register again.

import type { Allocation } from '../domain/resources.js';
import type { Executor, RetryPolicy } from '../domain/task.js';
import type { Worker } from '../domain/worker.js';
import type { ItemAck } from '../store/port.js';

export interface RegisterResponse {
  worker: Worker;
  /** Run ids the server ended as lost because this worker restarted: kill anything left of them. */
  orphaned: number[];
  /** Heartbeat at least this often (ms); silence past leaseMs makes the worker lost. */
  heartbeatMs: number;
  leaseMs: number;
}

/** One run to execute: everything the worker needs, nothing else. */
export interface WireAssignment {
  runId: number;
  token: string;
  taskId: number;
  attempt: number;
  name: string;
  executor: Executor;
  command: string[];
  shell: boolean;
  script: string | null;
  scriptPath: string | null;
  image: string | null;
  env: Record<string, string>;
  allocation: Allocation;
  /** Execution cap left, measured by the server from allocation (ms). The worker counts it down locally. */
  capRemainingMs: number;
  executionCap: number;
  retry: RetryPolicy;
}

export interface PollResponse {
  assignments: WireAssignment[];
  /** Runs to stop now (cancelled, or ended server-side). */
  cancel: number[];
  /** Heartbeat acks for `running`; a LEASE_STALE run is no longer this worker's: kill it. */
  acks: ItemAck[];
  /** The worker was asked to drain: take nothing new. */
  drain: boolean;
  /** Acks of a report that rode on the poll (present when the poll carried started, logs or results). */
  started?: ItemAck[];
  logs?: ItemAck[];
  results?: ItemAck[];
}

export interface ReportResponse {
  started: ItemAck[];
  logs: ItemAck[];
  results: ItemAck[];
  running: ItemAck[];
  cancel: number[];
}

export const WORKER_PATHS = {
  register: '/v1/workers/register',
  poll: (id: string) => `/v1/workers/${encodeURIComponent(id)}/poll`,
  report: (id: string) => `/v1/workers/${encodeURIComponent(id)}/report`,
  drain: (id: string) => `/v1/workers/${encodeURIComponent(id)}/drain`,
} as const;
