// Per-run log buffering between a child's pipes and the report loop. It never blocks the child: output is
// always read; what cannot be kept is dropped and a `system` marker says so. Two bounds:
//  - the cap: at most `capBytes` of output per run are shipped (the server enforces its own cap too);
//  - pending: at most `maxPendingBytes` wait for the server; past that (a slow or absent server) output is
//    dropped and counted, so a chatty run cannot eat the worker's memory.

import type { LogSink, LogStream } from './executors/types.js';

export interface LogChunkOut {
  stream: LogStream;
  at: number;
  data: string;
}

export const DEFAULT_LOG_CAP = 10 * 1024 * 1024;
export const DEFAULT_MAX_PENDING = 2 * 1024 * 1024;

export class RunLogBuffer implements LogSink {
  private chunks: LogChunkOut[] = [];
  private pending = 0;
  private accepted = 0;
  private dropped = 0;
  private capped = false;

  constructor(
    private readonly capBytes = DEFAULT_LOG_CAP,
    private readonly maxPendingBytes = DEFAULT_MAX_PENDING,
    /** Called when the buffer goes from empty to non-empty, so the agent can schedule a flush. */
    private readonly onData: () => void = () => {},
  ) {}

  get hasData(): boolean {
    return this.chunks.length > 0 || this.dropped > 0;
  }

  write(stream: LogStream, data: string, at = Date.now()): void {
    if (data === '') return;
    if (stream === 'system') {
      this.push(stream, data, at);
      return;
    }
    if (this.capped) return;
    let bytes = Buffer.byteLength(data);
    if (this.accepted + bytes > this.capBytes) {
      const room = this.capBytes - this.accepted;
      // Cut at a character boundary that fits in the room left.
      data = Buffer.from(data)
        .subarray(0, room)
        .toString('utf8')
        .replace(/\uFFFD$/, '');
      bytes = Buffer.byteLength(data);
      this.capped = true;
    }
    if (bytes > 0) {
      if (this.pending + bytes > this.maxPendingBytes) {
        this.dropped += bytes;
      } else {
        this.accepted += bytes;
        this.push(stream, data, at);
      }
    }
    if (this.capped)
      this.push('system', `[tsched] log cap of ${this.capBytes} bytes reached; further output of this run is dropped\n`, Date.now());
  }

  private push(stream: LogStream, data: string, at: number): void {
    const wasEmpty = !this.hasData;
    const last = this.chunks[this.chunks.length - 1];
    if (last && last.stream === stream && last.data.length < 1_000_000) last.data += data;
    else this.chunks.push({ stream, at, data });
    this.pending += Buffer.byteLength(data);
    if (wasEmpty) this.onData();
  }

  /** Takes everything buffered (in order), leaving the buffer empty. */
  take(): LogChunkOut[] {
    const out = this.chunks;
    if (this.dropped > 0) {
      out.push({
        stream: 'system',
        at: Date.now(),
        data: `[tsched] ${this.dropped} bytes of output dropped: the server was not keeping up\n`,
      });
      this.dropped = 0;
    }
    this.chunks = [];
    this.pending = 0;
    return out;
  }
}
