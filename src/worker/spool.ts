// The results spool: a finished result is on disk (written and fsynced) before it is sent, and leaves the
// disk only once the server acked it (ok, or refused as stale). Batches are appended to one open segment
// file — one write and one fdatasync per batch, not per result — which is emptied (truncated) when every
// result in it is acked, and set aside for a new one past SEGMENT_MAX while some are not (deleted when
// they are). Why not a file per batch: creating, syncing the directory of, and deleting a file cost ~1 ms
// of CPU per batch on ext4 here, most of a short run's reporting. A worker that crashes resends what its
// spool holds when it comes back (a torn last line is skipped); the server dedupes by lease token.

import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { WorkerReportBody } from '../protocol/schemas.js';

export type ResultItem = NonNullable<WorkerReportBody['results']>[number];

/** Past this size a segment still holding unacked results is set aside and a new one started. */
const SEGMENT_MAX = 1024 * 1024;

interface Active {
  file: string;
  fh: FileHandle;
  /** Where the next batch goes (positional writes: the file is truncated in place when emptied). */
  bytes: number;
}

export class ResultSpool {
  readonly dir: string;
  private seq = 0;
  private active: Active | null = null;
  /** Appends (and truncations) one at a time, in order. */
  private chain: Promise<unknown> = Promise.resolve();
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
    if (ids.size > 0) {
      const held = this.segments.get(file);
      if (held) for (const id of ids) held.add(id);
      else this.segments.set(file, ids);
    } else if (this.active?.file !== file) void fsp.unlink(file).catch(() => {});
  }

  /** Writes a batch durably. Resolves once it is fsynced (and a new segment's directory entry too). */
  append(results: ResultItem[]): Promise<void> {
    if (results.length === 0) return Promise.resolve();
    const done = this.chain.then(() => this.write(results));
    this.chain = done.catch(() => {});
    return done;
  }

  private async write(results: ResultItem[]): Promise<void> {
    const data = Buffer.from(`${results.map((r) => JSON.stringify(r)).join('\n')}\n`);
    let seg = this.active;
    if (!seg || (seg.bytes >= SEGMENT_MAX && this.segments.has(seg.file))) seg = await this.rotate();
    try {
      await seg.fh.write(data, 0, data.length, seg.bytes);
      await seg.fh.datasync();
    } catch (e) {
      // The segment may end in a torn line now: nothing more goes after it.
      await this.setAside(seg);
      throw e;
    }
    seg.bytes += data.length;
    this.track(seg.file, new Set(results.map((r) => r.runId)));
  }

  /** A new active segment, durable in the directory before any result is written to it. */
  private async rotate(): Promise<Active> {
    if (this.active) await this.setAside(this.active);
    const file = join(this.dir, `${Date.now().toString().padStart(15, '0')}-${process.pid}-${this.seq++}.jsonl`);
    const fh = await fsp.open(file, 'wx');
    const dh = await fsp.open(this.dir, 'r');
    try {
      await dh.sync();
    } catch {
      /* some file systems refuse fsync on directories */
    } finally {
      await dh.close();
    }
    this.active = { file, fh, bytes: 0 };
    return this.active;
  }

  /** No more writes to this segment: it is deleted once every result in it is acked (at once if none is left). */
  private async setAside(seg: Active): Promise<void> {
    if (this.active === seg) this.active = null;
    await seg.fh.close().catch(() => {});
    if (!this.segments.has(seg.file)) await fsp.unlink(seg.file).catch(() => {});
  }

  /** Closes the active segment: removed when it holds nothing unacked, else left for the next start. */
  async close(): Promise<void> {
    await this.chain;
    const seg = this.active;
    if (seg) await this.setAside(seg);
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
    if (ids.size > 0) return;
    this.segments.delete(file);
    const seg = this.active;
    if (seg?.file !== file) {
      void fsp.unlink(file).catch(() => {});
      return;
    }
    // The active segment holds nothing unacked: empty it in place, after any write queued before this ack
    // (a result not acked yet cannot be in it then: it would be in this.segments).
    this.chain = this.chain.then(async () => {
      if (this.active !== seg || this.segments.has(file)) return;
      try {
        await seg.fh.truncate(0);
        seg.bytes = 0;
      } catch {
        await this.setAside(seg);
      }
    });
  }

  get size(): number {
    return this.segmentOf.size;
  }
}
