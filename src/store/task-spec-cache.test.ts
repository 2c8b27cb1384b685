import { describe, expect, it } from 'vitest';
import type { Task } from '../domain/task.js';
import { normalizeTask } from '../domain/task-spec.js';
import { HELD_TASK_STATE_COLUMNS, stateRowOf, TASK_INSERT_COLUMNS, TASK_SPEC_COLUMNS } from './rows.js';
import { TaskSpecCache } from './task-spec-cache.js';

function task(id: number, over: Partial<Task> = {}): Task {
  return {
    ...normalizeTask({ command: ['echo', String(id)], env: { N: String(id) } }),
    id,
    owner: 'alice',
    status: 'waiting',
    attempts: 0,
    dueAt: 1000,
    startDeadline: 2000,
    createdAt: 500 + id,
    updatedAt: 500 + id,
    finishedAt: null,
    lastError: null,
    deadlineMissed: false,
    paused: false,
    ...over,
  } as Task;
}

/** The state row a pass reads for a held task. */
function stateRow(t: Task, over: Record<string, unknown> = {}) {
  return { ...stateRowOf(t), ...over } as Parameters<TaskSpecCache['task']>[0];
}

describe('TaskSpecCache', () => {
  it('rebuilds the whole task from the held spec and the state row', () => {
    const c = new TaskSpecCache();
    const t = task(1);
    c.put(t);
    expect(c.task(stateRow(t))).toEqual(t);
    const later = c.task(stateRow(t, { status: 'waiting', attempts: 2, due_at: 9000, start_deadline: 9500, updated_at: 8000 }));
    expect(later).toEqual({ ...t, attempts: 2, dueAt: 9000, startDeadline: 9500, updatedAt: 8000 });
    expect(c.stats).toEqual({ hits: 2, misses: 0 });
  });

  it('misses when nothing is held or the row is another task under a reused id', () => {
    const c = new TaskSpecCache();
    const t = task(1);
    expect(c.task(stateRow(t))).toBeNull();
    c.put(t);
    expect(c.task(stateRow(t, { created_at: t.createdAt + 1 }))).toBeNull();
    expect(c.stats).toEqual({ hits: 0, misses: 2 });
  });

  it('evicts the oldest spec when full, and never keeps a recurring definition', () => {
    const c = new TaskSpecCache(2);
    for (const id of [1, 2, 3]) c.put(task(id));
    expect([c.has(1), c.has(2), c.has(3), c.size]).toEqual([false, true, true, 2]);
    c.put(task(4, { recurrence: { nextOccurrenceAt: 1, lastOccurrenceAt: 0, occurrencesCreated: 0 } }));
    expect(c.has(4)).toBe(false);
  });

  it('freezes what it holds, so that no reader can change a later pass’s copy', () => {
    const c = new TaskSpecCache();
    const t = task(1);
    c.put(t);
    const again = c.task(stateRow(t))!;
    expect(() => {
      (again.command as string[]).push('x');
    }).toThrow(TypeError);
    expect(() => {
      (again.env as Record<string, string>).N = 'changed';
    }).toThrow(TypeError);
  });

  it('reads as state every insert column that is not spec, and as spec nothing a pass reads as state', () => {
    const state: readonly string[] = HELD_TASK_STATE_COLUMNS;
    for (const c of TASK_SPEC_COLUMNS) expect(state).not.toContain(c);
    const definitionOnly = ['is_definition', 'next_occurrence_at', 'last_occurrence_at'];
    const rest = TASK_INSERT_COLUMNS.filter((c) => !(TASK_SPEC_COLUMNS as readonly string[]).includes(c) && !definitionOnly.includes(c));
    expect(rest.filter((c) => !state.includes(c))).toEqual([]);
  });
});
