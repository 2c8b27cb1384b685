// Calls of one kind queued before their shared write transaction starts run as ONE call: on PostgreSQL a
// statement is a round trip, and group commit runs a batch's transactions one after another on one
// connection, so a thousand single-task submits a second would be two thousand round trips in a row. Joined,
// they are one INSERT of the tasks and one of their events.
//
// The group is open from the first call until its transaction starts; calls after that open the next group,
// queued behind it. If the joined call fails on its data (SQLSTATE class 22 or 23: one member's value), each
// member runs again alone, so one bad request takes no other with it; any other failure (the database away)
// is every member's answer, as it would have been alone.

import type { Backend, Exec } from './backend.js';

interface Member<I, O> {
  item: I;
  resolve: (o: O) => void;
  reject: (e: unknown) => void;
}

export class TxCombiner<I, O> {
  private open: Array<Member<I, O>> | null = null;

  /** @param runAll one output per item, in order, inside the caller's transaction */
  constructor(
    private readonly backend: Pick<Backend, 'tx'>,
    private readonly runAll: (ex: Exec, items: I[]) => Promise<O[]>,
  ) {}

  /** Queues the transaction synchronously (a pass kicked right after is queued behind it). */
  call(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      if (this.open) {
        this.open.push({ item, resolve, reject });
        return;
      }
      const members: Array<Member<I, O>> = [{ item, resolve, reject }];
      this.open = members;
      const done = this.backend.tx((ex) => {
        if (this.open === members) this.open = null;
        return this.runAll(
          ex,
          members.map((m) => m.item),
        );
      });
      done.then(
        (outs) => {
          for (const [i, m] of members.entries()) m.resolve(outs[i] as O);
        },
        (e: unknown) => {
          if (members.length === 1 || !dataError(e)) for (const m of members) m.reject(e);
          else for (const m of members) this.backend.tx((ex) => this.runAll(ex, [m.item])).then((o) => m.resolve(o[0] as O), m.reject);
        },
      );
    });
  }
}

/** A failure caused by one row's values (PostgreSQL SQLSTATE classes 22 and 23, SQLite constraint errors). */
function dataError(e: unknown): boolean {
  const code = String((e as { code?: unknown }).code ?? '');
  return /^2[23][0-9A-Z]{3}$/.test(code) || code.startsWith('SQLITE_CONSTRAINT') || code.startsWith('SQLITE_MISMATCH');
}
