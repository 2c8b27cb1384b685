// Shared by the worker's tests: a complete assignment with overridable fields, and a log sink that records.

import type { WireAssignment } from '../protocol/worker-api.js';
import type { LogSink, LogStream } from './executors/types.js';

let nextRunId = Math.floor(Math.random() * 1e6) * 1000 + 1;

export function assignment(over: Partial<WireAssignment> = {}): WireAssignment {
  const runId = over.runId ?? nextRunId++;
  return {
    runId,
    token: `tok-${runId}`,
    taskId: runId + 7,
    attempt: 1,
    name: 'test',
    executor: 'shell',
    command: [],
    shell: false,
    script: null,
    scriptPath: null,
    image: null,
    env: {},
    allocation: { cpus: 1000, memory: 256 * 1024 * 1024, ports: [], namedPorts: {} },
    capRemainingMs: 60_000,
    executionCap: 60_000,
    retry: { backoff: 1000, maxDelay: 60_000, noRetryExitCodes: [] },
    ...over,
  };
}

export class RecordingSink implements LogSink {
  readonly entries: Array<{ stream: LogStream; data: string; at: number }> = [];
  write(stream: LogStream, data: string, at = Date.now()): void {
    this.entries.push({ stream, data, at });
  }
  text(stream?: LogStream): string {
    return this.entries
      .filter((e) => !stream || e.stream === stream)
      .map((e) => e.data)
      .join('');
  }
}
