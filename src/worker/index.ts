// The worker agent's public surface: `tsched worker` calls startWorker.
export { defaultMemory, startWorker, type WorkerHandle, type WorkerLogger, type WorkerOptions } from './agent.js';
export { type Cgroups, detectCgroups } from './cgroups.js';
export { ShellExecutor, type ShellExecutorOptions } from './executors/shell.js';
export type { ExecContext, ExecResult, Executor, KillReason, LogSink, RunningRun } from './executors/types.js';
