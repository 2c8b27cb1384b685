// TypeBox schemas of the REST API and the worker protocol. The server validates every request with them,
// the CLI validates manifests with the same ones, and OpenAPI is generated from them. Unknown fields are
// refused everywhere (additionalProperties: false).

import { type Static, Type as T } from '@sinclair/typebox';

const Strict = { additionalProperties: false } as const;
const Duration = T.Union([T.String({ minLength: 1, maxLength: 64 }), T.Number()], {
  description: '"90s", "15m", "2h", "1d", ISO-8601 "PT15M", or milliseconds',
});
const Size = T.Union([T.String({ minLength: 1, maxLength: 32 }), T.Number()], { description: '"512Mi", "2GiB", "1.5G", or bytes' });
const Instant = T.Union([T.String({ minLength: 1, maxLength: 64 }), T.Number()], { description: 'ISO-8601 instant or epoch milliseconds' });
const StringMap = T.Record(T.String({ maxLength: 256 }), T.String({ maxLength: 65536 }));
const SchedulingType = T.Union(['once', 'daily', 'weekly', 'monthly', 'annually', 'cron'].map((s) => T.Literal(s)));

export const TaskInputSchema = T.Object(
  {
    name: T.Optional(T.String({ minLength: 1, maxLength: 200 })),
    command: T.Optional(
      T.Array(T.String({ maxLength: 65536 }), { maxItems: 4096, description: 'argv; run without a shell unless shell is true' }),
    ),
    shell: T.Optional(T.Boolean()),
    script: T.Optional(T.String({ maxLength: 1_048_576 })),
    scriptPath: T.Optional(T.String({ maxLength: 4096 })),
    image: T.Optional(T.String({ minLength: 1, maxLength: 512 })),
    executor: T.Optional(T.Union([T.Literal('shell'), T.Literal('docker')])),
    env: T.Optional(StringMap),
    resources: T.Optional(
      T.Object(
        {
          category: T.Optional(T.Union([T.Literal('basic'), T.Literal('regular'), T.Literal('premium')])),
          cpus: T.Optional(T.Number({ description: 'CPU cores, fractional allowed' })),
          memory: T.Optional(Size),
          ports: T.Optional(T.Integer()),
          portNames: T.Optional(T.Array(T.String({ maxLength: 32 }), { maxItems: 64 })),
        },
        Strict,
      ),
    ),
    constraints: T.Optional(StringMap),
    labels: T.Optional(StringMap),
    priority: T.Optional(T.Union([T.String({ maxLength: 16 }), T.Integer()])),
    delayTolerance: T.Optional(Duration),
    executionCap: T.Optional(Duration),
    totalAttempts: T.Optional(T.Integer()),
    retry: T.Optional(
      T.Object(
        {
          backoff: T.Optional(Duration),
          maxDelay: T.Optional(Duration),
          noRetryExitCodes: T.Optional(T.Array(T.Integer(), { maxItems: 256 })),
        },
        Strict,
      ),
    ),
    schedulingType: T.Optional(SchedulingType),
    schedule: T.Optional(
      T.Object(
        {
          type: SchedulingType,
          at: T.Optional(T.String({ maxLength: 8 })),
          on: T.Optional(
            T.Union([
              T.String({ maxLength: 32 }),
              T.Integer(),
              T.Array(T.Union([T.String({ maxLength: 32 }), T.Integer()]), { maxItems: 31 }),
            ]),
          ),
          cron: T.Optional(T.String({ maxLength: 256 })),
          timezone: T.Optional(T.String({ maxLength: 64 })),
          startAt: T.Optional(Instant),
          endAt: T.Optional(Instant),
          maxOccurrences: T.Optional(T.Integer()),
          overlap: T.Optional(T.Union([T.Literal('skip'), T.Literal('queue'), T.Literal('allow'), T.Literal('replace')])),
        },
        Strict,
      ),
    ),
    startAt: T.Optional(Instant),
    placement: T.Optional(T.Union([T.Literal('binpack'), T.Literal('spread')])),
    notify: T.Optional(
      T.Object({ url: T.String({ maxLength: 2048 }), events: T.Optional(T.Array(T.String({ maxLength: 64 }), { maxItems: 32 })) }, Strict),
    ),
    onDeadlineMiss: T.Optional(T.Union([T.Literal('run'), T.Literal('expire')])),
  },
  Strict,
);
export type TaskInputBody = Static<typeof TaskInputSchema>;

/** POST /v1/tasks takes one task, or { tasks: [...] } for a batch (all or nothing). */
export const SubmitBatchSchema = T.Object({ tasks: T.Array(TaskInputSchema, { minItems: 1, maxItems: 10_000 }) }, Strict);

export const TaskListQuerySchema = T.Object(
  {
    status: T.Optional(T.String({ description: 'comma-separated statuses' })),
    limit: T.Optional(T.Integer({ minimum: 1, maximum: 1000 })),
    cursor: T.Optional(T.String({ maxLength: 256 })),
    parent: T.Optional(T.Integer({ minimum: 1 })),
    all: T.Optional(T.Boolean({ description: 'admin only: every owner' })),
  },
  Strict,
);

export const IdParamsSchema = T.Object({ id: T.Integer({ minimum: 1 }) }, Strict);

export const LogsQuerySchema = T.Object(
  {
    offset: T.Optional(T.Integer({ minimum: 0 })),
    run: T.Optional(T.Integer({ minimum: 1, description: 'a run id; default the latest run' })),
    follow: T.Optional(T.Boolean({ description: 'stream as server-sent events until the run ends' })),
    limit: T.Optional(T.Integer({ minimum: 1, maximum: 10_000 })),
  },
  Strict,
);

// ---- worker protocol

const CapacitySchema = T.Object(
  {
    cpus: T.Integer({ minimum: 1, description: 'millicores' }),
    memory: T.Integer({ minimum: 1, description: 'bytes' }),
    ports: T.Union([
      T.Null(),
      T.Object({ from: T.Integer({ minimum: 1, maximum: 65535 }), to: T.Integer({ minimum: 1, maximum: 65535 }) }, Strict),
    ]),
  },
  Strict,
);

export const WorkerRegisterSchema = T.Object(
  {
    name: T.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' }),
    capacity: CapacitySchema,
    labels: T.Optional(StringMap),
    executors: T.Array(T.Union([T.Literal('shell'), T.Literal('docker')]), { minItems: 1, maxItems: 2 }),
    enforcement: T.Optional(T.Object({ memory: T.String({ maxLength: 32 }), cpu: T.String({ maxLength: 32 }) }, Strict)),
    version: T.Optional(T.String({ maxLength: 64 })),
    hostname: T.Optional(T.String({ maxLength: 256 })),
  },
  Strict,
);

const RunTokenFields = { runId: T.Integer({ minimum: 1 }), token: T.String({ minLength: 1, maxLength: 128 }) };

/** A worker's batched report: starts, log chunks, results, heartbeats. */
const WorkerReportFields = {
  started: T.Optional(T.Array(T.Object({ ...RunTokenFields, at: T.Number() }, Strict), { maxItems: 100_000 })),
  logs: T.Optional(
    T.Array(
      T.Object(
        {
          ...RunTokenFields,
          stream: T.Union([T.Literal('stdout'), T.Literal('stderr'), T.Literal('system')]),
          at: T.Number(),
          data: T.String({ maxLength: 4_194_304 }),
        },
        Strict,
      ),
      { maxItems: 100_000 },
    ),
  ),
  results: T.Optional(
    T.Array(
      T.Object(
        {
          ...RunTokenFields,
          outcome: T.Union(['succeeded', 'failed', 'timed_out', 'cancelled', 'lost'].map((s) => T.Literal(s))),
          exitCode: T.Union([T.Integer(), T.Null()]),
          reason: T.Union([T.String({ maxLength: 4096 }), T.Null()]),
          startedAt: T.Union([T.Number(), T.Null()]),
          finishedAt: T.Number(),
          usage: T.Optional(T.Object({ peakMemory: T.Union([T.Number(), T.Null()]), cpuSeconds: T.Union([T.Number(), T.Null()]) }, Strict)),
        },
        Strict,
      ),
      { maxItems: 100_000 },
    ),
  ),
  running: T.Optional(T.Array(T.Object(RunTokenFields, Strict), { maxItems: 100_000 })),
};

export const WorkerPollSchema = T.Object(
  {
    /** Most assignments to return. */
    max: T.Optional(T.Integer({ minimum: 1, maximum: 10_000 })),
    /** Long-poll: how long to wait for work, ms. */
    wait: T.Optional(T.Integer({ minimum: 0, maximum: 60_000 })),
    /**
     * `running` (live runs this worker holds: their leases are extended), and a whole report may ride on
     * the poll (one request per cycle): its items are acked in the response.
     */
    ...WorkerReportFields,
  },
  Strict,
);

export const WorkerReportSchema = T.Object(WorkerReportFields, Strict);

export type WorkerReportBody = Static<typeof WorkerReportSchema>;
export type WorkerPollBody = Static<typeof WorkerPollSchema>;
