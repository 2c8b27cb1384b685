// PostgreSQL plans from table statistics, and autovacuum refreshes them at most once a minute (its naptime).
// After a burst — a fresh table that went from empty to 20,000 waiting tasks in a second — the scheduler's
// candidate query would be planned as "fetch every waiting task and sort" (48 ms) instead of "walk the
// ready index and stop after the window" (0.1 ms). So the store analyzes its hot tables itself, off the
// request path, once they have grown by a fifth (at least 1,000 rows) since it last did. ANALYZE samples a
// bounded number of rows (300 × the statistics target), so each one costs milliseconds whatever the
// table's size; the store's own samples 3,000 rows, not the default 30,000 (see SAMPLE_TARGET).

import type { Backend } from './backend.js';

const MIN_GROWTH = 1000;
const GROWTH_FRACTION = 0.2;
/**
 * The statistics target of the store's own ANALYZE. Plans need the tables' size and the mix of statuses
 * after a burst, not fine histograms, and the sample is 300 rows per unit: over 40,000 tasks and 40,000
 * runs, 290 ms of PostgreSQL's CPU at the default of 100, 45 ms at 10 (a drain analyzes every few seconds
 * as the runs table grows). Autovacuum's ANALYZE, at the server's own target, refines them later.
 */
const SAMPLE_TARGET = 10;

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
    // A transaction of its own, off the group commit: SET LOCAL ends with it, so the pooled connection
    // keeps the server's default; ANALYZE locks nothing that writes wait for.
    this.running = this.backend
      .tx(
        async (ex) => {
          await ex.all(`SET LOCAL default_statistics_target = ${SAMPLE_TARGET}`);
          await ex.all(`ANALYZE ${this.tables}`);
        },
        { alone: true },
      )
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
