// The scheduling pass reads its candidates again and again: when a few slots free up, a pass places a few
// tasks from the head of the queue and the rest of its window comes back in the next pass. A task's spec
// (command, env, resources, constraints, labels, retry, …) never changes once a non-definition task is
// inserted (only a recurring definition's schedule is ever updated, and definitions are never candidates),
// so a pass needs only the state columns of a task it has read before. Parsing the spec's JSON and building
// ~45-column rows was the largest cost of a pass that places a few tasks (~1.3 of ~7.5 ms per report cycle
// with /bin/true tasks).
//
// The cache lives in one store handle's memory; every replica has its own, and none needs invalidating
// because what it holds never changes. An entry is used only when the row's created_at matches, so an id
// reused after a table was emptied and its sequence reset cannot pick up another task's spec. Specs are
// frozen: a consumer that changed one would change every later pass's copy.

import type { Task } from '../domain/task.js';
import { specOfTask, type TaskSpec, type TaskStateRow, taskFromSpec } from './rows.js';

/** Default number of specs kept: a few windows of candidates (a spec is ~1 KB). */
const DEFAULT_MAX = 4096;

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

export class TaskSpecCache {
  private readonly specs = new Map<number, TaskSpec>();
  /** Counters for tests and bench work. */
  readonly stats = { hits: 0, misses: 0 };

  constructor(private readonly max = DEFAULT_MAX) {}

  /** Whether a spec is held for this id (its created_at is checked when the state row comes back). */
  has(id: number): boolean {
    return this.specs.has(id);
  }

  /** Keeps a task's spec, evicting the oldest entry when full. Definitions are never kept. */
  put(task: Task): void {
    if (task.recurrence !== undefined) return;
    if (this.specs.size >= this.max && !this.specs.has(task.id)) {
      const oldest = this.specs.keys().next().value as number;
      this.specs.delete(oldest);
    }
    const spec = specOfTask(task);
    this.specs.set(task.id, deepFreeze(spec));
  }

  /** The whole task from a held spec and a state row, or null when the spec is not held or is another task's. */
  task(row: TaskStateRow): Task | null {
    const id = Number(row.id);
    const spec = this.specs.get(id);
    if (!spec || spec.createdAt !== Number(row.created_at)) {
      this.stats.misses++;
      return null;
    }
    this.stats.hits++;
    return taskFromSpec(spec, row);
  }

  get size(): number {
    return this.specs.size;
  }
}
