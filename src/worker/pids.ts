// Pid records: workDir/pids/<runId> holds the process group of a live run, so that a worker that crashed and
// restarted can kill what its previous life left behind. A record is trusted only if a process of that group
// still carries the run's TSCHED_RUN_ID in its environment (pids get reused).

import { promises as fsp } from 'node:fs';
import { join } from 'node:path';

export interface PidRecord {
  runId: number;
  pid: number;
  startedAt: number;
}

export class PidRecords {
  readonly dir: string;
  constructor(workDir: string) {
    this.dir = join(workDir, 'pids');
  }

  async init(): Promise<void> {
    await fsp.mkdir(this.dir, { recursive: true });
  }

  write(rec: PidRecord): Promise<void> {
    return fsp.writeFile(join(this.dir, String(rec.runId)), JSON.stringify(rec));
  }

  remove(runId: number): Promise<void> {
    return fsp.unlink(join(this.dir, String(runId))).catch(() => {});
  }

  async list(): Promise<PidRecord[]> {
    const names = await fsp.readdir(this.dir).catch(() => [] as string[]);
    const out: PidRecord[] = [];
    for (const n of names) {
      try {
        const rec = JSON.parse(await fsp.readFile(join(this.dir, n), 'utf8')) as PidRecord;
        if (Number.isInteger(rec.pid) && rec.pid > 1 && Number.isInteger(rec.runId)) out.push(rec);
      } catch {
        await fsp.unlink(join(this.dir, n)).catch(() => {});
      }
    }
    return out;
  }

  /**
   * Kills every process left of the given runs (all records when `only` is absent) and removes their records.
   * Returns the runs for which something was still alive and killed.
   */
  async killLeftovers(only?: Set<number>): Promise<Array<{ runId: number; killed: number }>> {
    const recs = (await this.list()).filter((r) => !only || only.has(r.runId));
    if (recs.length === 0) return [];
    const byGroup = new Map(recs.map((r) => [r.pid, r]));
    const victims = await findRunProcesses(byGroup);
    const out: Array<{ runId: number; killed: number }> = [];
    for (const r of recs) {
      const pids = victims.get(r.runId) ?? [];
      if (pids.length > 0) {
        try {
          process.kill(-r.pid, 'SIGKILL');
        } catch {
          /* the group may be gone while members that left it remain */
        }
        for (const p of pids) {
          try {
            process.kill(p, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        out.push({ runId: r.runId, killed: pids.length });
      }
      await this.remove(r.runId);
    }
    return out;
  }
}

/** Processes whose session or group is a recorded run leader and whose environment names that run. */
async function findRunProcesses(byGroup: Map<number, PidRecord>): Promise<Map<number, number[]>> {
  const out = new Map<number, number[]>();
  const names = await fsp.readdir('/proc').catch(() => [] as string[]);
  for (const n of names) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const stat = await fsp.readFile(`/proc/${n}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const rec = byGroup.get(Number(f[2])) ?? byGroup.get(Number(f[3]));
      if (!rec) continue;
      const environ = await fsp.readFile(`/proc/${n}/environ`, 'utf8');
      if (!environ.split('\0').includes(`TSCHED_RUN_ID=${rec.runId}`)) continue;
      const list = out.get(rec.runId) ?? [];
      list.push(Number(n));
      out.set(rec.runId, list);
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}
