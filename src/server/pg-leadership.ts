// Leader election for cluster mode: a lease row per role in the store's `leader` table, judged by the
// database's clock. The holder renews it every `renewMs` for `ttlMs`; followers try to take it at the same
// pace, and take it once it has expired (a killed leader is replaced within ttl + renew). Each takeover
// increments the epoch, and every leader-only write (applyPlan, reap, recordDeadlineMisses) carries the
// epoch it was decided under, so a deposed leader that still runs a tick changes nothing.
//
// Stepping down is immediate and local: a renewal that fails, or one that finds someone else holding the
// lease, or no successful renewal before the lease would end (a hung connection), calls onChange(false) at
// once. The store's epoch check is the backstop for what is already in flight.

import type { Logger } from 'pino';
import type { LeadershipState, Store } from '../store/port.js';
import type { Leadership } from './cluster-seams.js';

export interface PgLeadershipOptions {
  store: Pick<Store, 'acquireLeadership' | 'releaseLeadership'>;
  /** This replica's name in the lease row (its URL and pid); a function when it is known only after listen. */
  holder: string | (() => string);
  /** Default 'scheduler' (the role the store's fencing checks). */
  role?: string;
  /** Lease length, ms. Default 3000. */
  ttlMs?: number;
  /** How often the leader renews and followers try, ms. Default 1000. */
  renewMs?: number;
  log?: Logger;
}

export class PgLeadership implements Leadership {
  private readonly role: string;
  private readonly ttlMs: number;
  private readonly renewMs: number;
  private leader = false;
  private term: number | null = null;
  private known: { holder: string | null; epoch: number } = { holder: null, epoch: 0 };
  private readonly listeners: Array<(leader: boolean) => void> = [];
  private stopped = true;
  private timer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | null = null;
  private lastError: string | null = null;

  constructor(private readonly opts: PgLeadershipOptions) {
    this.role = opts.role ?? 'scheduler';
    this.ttlMs = opts.ttlMs ?? 3000;
    this.renewMs = opts.renewMs ?? 1000;
    if (!(this.ttlMs >= (3 * this.renewMs) / 2))
      throw new Error(`leadership: ttlMs (${this.ttlMs}) must be at least 1.5 × renewMs (${this.renewMs}) so a renewal can land in time`);
  }

  private get holderName(): string {
    return typeof this.opts.holder === 'function' ? this.opts.holder() : this.opts.holder;
  }

  isLeader(): boolean {
    return this.leader;
  }

  epoch(): number | null {
    return this.leader ? this.term : null;
  }

  /** The holder of the lease as last seen by this replica (itself when leader). */
  currentHolder(): string | null {
    return this.leader ? this.holderName : this.known.holder;
  }

  describe(): { replica: string; leaderReplica: string | null; epoch: number | null } {
    return { replica: this.holderName, leaderReplica: this.currentHolder(), epoch: this.leader ? this.term : this.known.epoch };
  }

  onChange(cb: (leader: boolean) => void): void {
    this.listeners.push(cb);
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.attempt(); // the first replica up leads at once
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.watchdog) clearTimeout(this.watchdog);
    await this.inFlight?.catch(() => {});
    const was = this.leader;
    this.setLeader(false, null, 'stopping');
    // Hand over at once instead of letting followers wait for the lease to expire.
    if (was) await this.opts.store.releaseLeadership(this.role, this.holderName).catch(() => {});
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.attempt().finally(() => this.schedule());
    }, this.renewMs);
    this.timer.unref();
  }

  private attempt(): Promise<void> {
    const run = async () => {
      const sentAt = performance.now();
      let st: LeadershipState;
      try {
        st = await this.opts.store.acquireLeadership(this.role, this.holderName, this.ttlMs);
      } catch (err) {
        const msg = (err as Error).message ?? String(err);
        if (this.leader || this.lastError !== msg) this.opts.log?.warn({ err: msg }, 'leadership: lease renewal failed');
        this.lastError = msg;
        this.setLeader(false, null, 'renewal failed');
        return;
      }
      this.lastError = null;
      if (this.stopped) return;
      this.known = { holder: st.holder, epoch: st.epoch };
      if (!st.leader) {
        this.setLeader(false, null, `held by ${st.holder}`);
        return;
      }
      this.armWatchdog(sentAt);
      this.setLeader(true, st.epoch, 'lease taken');
    };
    this.inFlight = run();
    return this.inFlight;
  }

  /** Step down locally if no renewal succeeds before the lease (measured from when we asked) would end. */
  private armWatchdog(sentAt: number): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    const margin = Math.min(500, this.ttlMs / 4);
    const until = sentAt + this.ttlMs - margin;
    this.watchdog = setTimeout(
      () => {
        if (this.leader) this.setLeader(false, null, 'lease not renewed in time');
      },
      Math.max(0, until - performance.now()),
    );
    this.watchdog.unref();
  }

  private setLeader(leader: boolean, epoch: number | null, why: string): void {
    if (leader && this.leader && epoch !== this.term) {
      // Our lease had lapsed without anyone else taking it: same replica, new term.
      this.opts.log?.info({ epoch, previous: this.term }, 'leadership: new term');
      this.term = epoch;
      return;
    }
    if (leader === this.leader) return;
    this.leader = leader;
    this.term = leader ? epoch : null;
    if (!leader && this.watchdog) clearTimeout(this.watchdog);
    this.opts.log?.info({ leader, epoch, why }, leader ? 'leadership: acquired' : 'leadership: lost');
    for (const cb of this.listeners) {
      try {
        cb(leader);
      } catch (err) {
        this.opts.log?.error({ err }, 'leadership listener failed');
      }
    }
  }
}
