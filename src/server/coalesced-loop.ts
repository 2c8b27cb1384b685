// The shape every leader control loop shares: passes triggered by events and coalesced (any number of kicks
// during a pass collapse into one follow-up pass), a slow interval as a fallback, and a timer to wake at
// the exact instant of the next known due time.

export class CoalescedLoop {
  private interval: NodeJS.Timeout | undefined;
  private atTimer: NodeJS.Timeout | undefined;
  private atTimerAt = Number.POSITIVE_INFINITY;
  private running = false;
  private dirty = false;
  private stopped = true;
  private idle: Array<() => void> = [];
  /** Kickers waiting for a pass that starts after their kick. */
  private waiting: Array<() => void> = [];

  /**
   * @param pass one pass; resolves true when it stopped at its batch limit, so another should follow at once
   * @param onError a failed pass is reported and retried on the next kick
   */
  constructor(
    private readonly pass: () => Promise<boolean>,
    private readonly onError: (err: unknown) => void,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.stopped = false;
    this.interval = setInterval(() => this.kick(), this.intervalMs);
    this.interval.unref();
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.interval) clearInterval(this.interval);
    if (this.atTimer) clearTimeout(this.atTimer);
    this.atTimer = undefined;
    this.atTimerAt = Number.POSITIVE_INFINITY;
    if (this.running) await new Promise<void>((r) => this.idle.push(r));
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /**
   * Ask for a pass soon. Cheap; call it on every event that may matter. The promise resolves when a pass
   * that started after this call has ended (whether or not it succeeded), for callers that want its result.
   */
  kick(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const done = new Promise<void>((r) => this.waiting.push(r));
    if (this.running) {
      this.dirty = true;
      return done;
    }
    this.running = true;
    // Start in a microtask, not on the next turn: a pass kicked right after a write is queued (kickAfter)
    // then queues its own transaction before the group commit flushes, and rides the same commit.
    queueMicrotask(() => void this.loop());
    return done;
  }

  /** Wake for a pass at `at` (epoch ms, judged against `now`), unless an earlier wake is already set. */
  wakeAt(at: number | null, now: number): void {
    if (at === null || at <= now || this.stopped) return;
    if (this.atTimer && at >= this.atTimerAt) return;
    if (this.atTimer) clearTimeout(this.atTimer);
    this.atTimerAt = at;
    this.atTimer = setTimeout(
      () => {
        this.atTimer = undefined;
        this.atTimerAt = Number.POSITIVE_INFINITY;
        this.kick();
      },
      Math.min(at - now + 1, 2 ** 31 - 1),
    );
    this.atTimer.unref();
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.dirty = false;
        if (this.stopped) break;
        const mine = this.waiting.splice(0);
        try {
          if (await this.pass()) this.dirty = true;
        } finally {
          for (const r of mine) r();
        }
      } while (this.dirty && !this.stopped);
    } catch (err) {
      this.onError(err);
    } finally {
      this.running = false;
      // A failed or stopped loop still answers everyone who waited on it; the next kick retries.
      for (const r of this.waiting.splice(0)) r();
      for (const r of this.idle.splice(0)) r();
    }
  }
}
