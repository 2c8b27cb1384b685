// Named reasons why a task was not placed. Stable codes: the API, the CLI and the docs show them.

export const REASONS = {
  draining: 'the worker is draining and takes no new tasks',
  lost: 'the worker stopped heartbeating',
  stopped: 'the worker has stopped',
  executor: 'the worker does not offer the executor the task needs',
  labels: "the worker's labels do not match the task's constraints",
  cpu: 'not enough free cpu',
  memory: 'not enough free memory',
  ports: 'not enough free ports in the worker’s range',
  too_large: 'the task needs more than the worker has in total',
  reserved: 'the only worker with room is held for a higher-ranked task that would otherwise starve',
  quota_cpu: "the owner's concurrent cpu quota would be exceeded",
  quota_memory: "the owner's concurrent memory quota would be exceeded",
  deferred_off_peak: 'the cluster is busy and the task has ample slack, so it waits for off-peak',
  pass_limit: 'this pass reached maxPlacementsPerPass; the task is considered next pass',
  no_workers: 'no worker is registered',
} as const;

export type ReasonCode = keyof typeof REASONS;
