// The results spool: a finished result is on disk (written and fsynced) before it is sent, and leaves the
// disk only once the server acked it (ok, or refused as stale). One segment file per flushed batch — one
// write and one fsync per batch, not per result — deleted when every result in it is acked. A worker that
// crashes resends what its spool holds when it comes back; the server dedupes by lease token.

import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { WorkerReportBody } from '../protocol/schemas.js';

export type ResultItem = NonNullable<WorkerReportBody['results']>[number];

export class ResultSpool {
  readonly dir: string;
  private seq = 0;
  /** segment file → run ids in it not yet acked */
  private readonly segments = new Map<string, Set<number>>();
  private readonly segmentOf = new Map<number, string>();

  constructor(workDir: string) {
    this.dir = join(workDir, 'spool');
  }

  /** Creates the directory and returns the results a previous life left unacked. */
  async init(): Promise<ResultItem[]> {
    await fsp.mkdir(this.dir, { recursive: true });
    const names = (await fsp.readdir(this.dir)).filter((n) => n.endsWith('.jsonl')).sort();
    const byRun = new Map<number, ResultItem>();
    for (const n of names) {
      const file = join(this.dir, n);
      const ids = new Set<number>();
      for (const line of (await fsp.readFile(file, 'utf8')).split('\n')) {
        if (line === '') continue;
        try {
          const r = JSON.parse(line) as ResultItem;
          byRun.set(r.runId, r);
          ids.add(r.runId);
        } catch {
          // A torn last line from a crash mid-write: that batch was never sent, its run ended lost server-side.
        }
      }
      this.track(file, ids);
    }
    return [...byRun.values()];
  }

  private track(file: string, ids: Set<number>): void {
    for (const id of ids) {
      const prev = this.segmentOf.get(id);
      if (prev) this.forget(prev, id);
      this.segmentOf.set(id, file);
    }
    if (ids.size > 0) this.segments.set(file, ids);
    else void fsp.unlink(file).catch(() => {});
  }

  /** Writes a batch durably. Resolves once it is fsynced (file and directory). */
  async append(results: ResultItem[]): Promise<void> {
    if (results.length === 0) return;
    const file = join(this.dir, `${Date.now().toString().padStart(15, '0')}-${process.pid}-${this.seq++}.jsonl`);
    const fh = await fsp.open(file, 'wx');
    try {
      await fh.writeFile(`${results.map((r) => JSON.stringify(r)).join('\n')}\n`);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    const dh = await fsp.open(this.dir, 'r');
    try {
      await dh.sync();
    } catch {
      /* some file systems refuse fsync on directories */
    } finally {
      await dh.close();
    }
    this.track(file, new Set(results.map((r) => r.runId)));
  }

  /** The server answered for these runs: their results can go. */
  ack(runIds: Iterable<number>): void {
    for (const id of runIds) {
      const file = this.segmentOf.get(id);
      if (file) this.forget(file, id);
    }
  }

  private forget(file: string, id: number): void {
    this.segmentOf.delete(id);
    const ids = this.segments.get(file);
    if (!ids) return;
    ids.delete(id);
    if (ids.size === 0) {
      this.segments.delete(file);
      void fsp.unlink(file).catch(() => {});
    }
  }

  get size(): number {
    return this.segmentOf.size;
  }
}
