// Memory enforcement where no cgroup can be had: every ~250 ms, sum the resident set size of every process in
// a run's session (the run leader calls setsid, so its session id is its pid and every descendant shares it
// unless it deliberately calls setsid again) and kill the run when the sum passes its limit. Also yields a
// peak-RSS and a CPU-time estimate (ticks of the processes seen alive).

import { promises as fsp } from 'node:fs';

const PAGE = 4096;
const TICKS = 100;

export interface RssWatch {
  peak(): number | null;
  cpuSeconds(): number | null;
  stop(): void;
}

interface Entry {
  limit: number;
  onExceeded: (rss: number) => void;
  peak: number;
  /** Per pid: the last CPU ticks seen, so the sum survives processes that exit. */
  ticks: Map<number, number>;
  fired: boolean;
}

export class RssWatcher {
  private readonly entries = new Map<number, Entry>();
  private timer: NodeJS.Timeout | null = null;
  private busy = false;

  constructor(private readonly intervalMs = 250) {}

  watch(sid: number, limitBytes: number, onExceeded: (rss: number) => void): RssWatch {
    const e: Entry = { limit: limitBytes, onExceeded, peak: 0, ticks: new Map(), fired: false };
    this.entries.set(sid, e);
    if (!this.timer) {
      this.timer = setInterval(() => void this.tick(), this.intervalMs);
      this.timer.unref();
    }
    return {
      peak: () => (e.peak > 0 ? e.peak : null),
      cpuSeconds: () => (e.ticks.size > 0 ? [...e.ticks.values()].reduce((a, b) => a + b, 0) / TICKS : null),
      stop: () => {
        this.entries.delete(sid);
        if (this.entries.size === 0 && this.timer) {
          clearInterval(this.timer);
          this.timer = null;
        }
      },
    };
  }

  /** One sweep of /proc. Public so that a run can be checked right away. */
  async tick(): Promise<void> {
    if (this.busy || this.entries.size === 0) return;
    this.busy = true;
    try {
      const sums = new Map<number, number>();
      const names = await fsp.readdir('/proc').catch(() => [] as string[]);
      await Promise.all(
        names.map(async (n) => {
          if (n.charCodeAt(0) < 48 || n.charCodeAt(0) > 57) return;
          let stat: string;
          try {
            stat = await fsp.readFile(`/proc/${n}/stat`, 'utf8');
          } catch {
            return;
          }
          const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
          const sid = Number(f[3]);
          const e = this.entries.get(sid);
          if (!e) return;
          e.ticks.set(Number(n), Number(f[11]) + Number(f[12]));
          sums.set(sid, (sums.get(sid) ?? 0) + Number(f[21]) * PAGE);
        }),
      );
      for (const [sid, rss] of sums) {
        const e = this.entries.get(sid);
        if (!e) continue;
        if (rss > e.peak) e.peak = rss;
        if (e.limit > 0 && rss > e.limit && !e.fired) {
          e.fired = true;
          e.onExceeded(rss);
        }
      }
    } finally {
      this.busy = false;
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.entries.clear();
  }
}
