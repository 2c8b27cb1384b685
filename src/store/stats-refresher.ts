// PostgreSQL plans from table statistics, and autovacuum refreshes them at most once a minute (its naptime).
// After a burst — a fresh table that went from empty to 20,000 waiting tasks in a second — the scheduler's
// candidate query would be planned as "fetch every waiting task and sort" (48 ms) instead of "walk the
// ready index and stop after the window" (0.1 ms). So the store analyzes its hot tables itself, off the
// request path, once they have grown by a fifth (at least 1,000 rows) since it last did. ANALYZE samples a
// bounded number of rows, so each one costs milliseconds whatever the table's size.

import type { Backend } from './backend.js';

const MIN_GROWTH = 1000;
const GROWTH_FRACTION = 0.2;

export class StatsRefresher {
  private grown = 0;
  private seen = 0;
  private running: Promise<void> | null = null;

  constructor(
    private readonly backend: Backend,
    private readonly tables: string,
    private readonly onError: (err: unknown) => void = () => {},
  ) {}

  /** `n` rows were added to the hot tables (after the commit). */
  grew(n: number): void {
    if (this.backend.kind !== 'postgres' || n <= 0) return;
    this.grown += n;
    this.seen += n;
    if (this.running || this.grown < Math.max(MIN_GROWTH, this.seen * GROWTH_FRACTION)) return;
    this.grown = 0;
    this.running = this.backend
      .read((ex) => ex.all(`ANALYZE ${this.tables}`))
      .then(
        () => {},
        (err) => this.onError(err),
      )
      .finally(() => {
        this.running = null;
      });
  }

  /** Resolves when an ANALYZE in progress has ended (for tests and shutdown). */
  settled(): Promise<void> {
    return this.running ?? Promise.resolve();
  }
}
