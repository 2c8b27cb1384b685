// In-process wake-ups: long-polling workers and log followers sleep here until something happens that
// concerns them, so that a submit, a cancel or a drain reaches a worker in milliseconds without polling
// the database. Across replicas (cluster mode) a notifier feeds the same hub from LISTEN/NOTIFY.

type Waiter = () => void;

export class Wakeups {
  private workers = new Map<string, Set<Waiter>>();
  private runLogs = new Map<number, Set<Waiter>>();
  private anyWorker = new Set<Waiter>();

  /** Resolves when the worker is woken or the timeout passes; `signal` ends it early. */
  waitWorker(workerId: string, timeoutMs: number): { promise: Promise<void>; cancel: () => void } {
    return this.wait(this.workers, workerId, timeoutMs);
  }

  wakeWorker(workerId: string): void {
    this.fire(this.workers, workerId);
  }

  wakeAllWorkers(): void {
    for (const id of [...this.workers.keys()]) this.fire(this.workers, id);
    for (const w of [...this.anyWorker]) w();
  }

  waitLogs(runId: number, timeoutMs: number): { promise: Promise<void>; cancel: () => void } {
    return this.wait(this.runLogs, runId, timeoutMs);
  }

  wakeLogs(runId: number): void {
    this.fire(this.runLogs, runId);
  }

  private wait<K>(map: Map<K, Set<Waiter>>, key: K, timeoutMs: number): { promise: Promise<void>; cancel: () => void } {
    let done: Waiter = () => {};
    let timer: NodeJS.Timeout | undefined;
    const promise = new Promise<void>((resolve) => {
      done = () => {
        if (timer) clearTimeout(timer);
        const set = map.get(key);
        if (set) {
          set.delete(done);
          if (set.size === 0) map.delete(key);
        }
        resolve();
      };
      let set = map.get(key);
      if (!set) {
        set = new Set();
        map.set(key, set);
      }
      set.add(done);
      timer = setTimeout(done, timeoutMs);
    });
    return { promise, cancel: () => done() };
  }

  private fire<K>(map: Map<K, Set<Waiter>>, key: K): void {
    const set = map.get(key);
    if (!set) return;
    for (const w of [...set]) w();
  }
}
