import { describe, expect, it } from 'vitest';
import { EVENT_COLUMNS, EVENTS_PER_ROW, type EventIn, type EventRow, eventRowsOf, eventsFromRow } from './rows.js';

const ev = (taskId: number, type: string, at = 1000, runId: number | null = null): EventIn => ({
  taskId,
  runId,
  at,
  actor: 'scheduler',
  type,
  from: 'a',
  to: 'b',
  reason: type === 'x' ? 'why' : null,
});

/** The rows as the database would return them, ids drawn from `firstId` in insertion order. */
const stored = (rows: unknown[][], firstId: number): EventRow[] =>
  rows.map((r, i) => ({ id: firstId + i, ...Object.fromEntries(EVENT_COLUMNS.map((c, k) => [c, r[k]])) }) as unknown as EventRow);

describe('event rows', () => {
  it("packs each task's events of one write into one row, in order, and reads them back with ordered ids", () => {
    const events = [
      ev(1, 'task.claimed', 10, 7),
      ev(2, 'task.claimed', 10, 8),
      ev(1, 'run.assigned', 10, 7),
      ev(2, 'run.assigned', 11, 8),
      ev(1, 'x', 12),
    ];
    const rows = eventRowsOf(events);
    expect(rows.length).toBe(2);
    const back = stored(rows, 5).flatMap(eventsFromRow);
    const byTask = (id: number) => back.filter((e) => e.taskId === id);
    expect(byTask(1).map(({ id: _, ...e }) => e)).toEqual(events.filter((e) => e.taskId === 1));
    expect(byTask(2).map(({ id: _, ...e }) => e)).toEqual(events.filter((e) => e.taskId === 2));
    expect(byTask(1).map((e) => e.id)).toEqual([5 * EVENTS_PER_ROW, 5 * EVENTS_PER_ROW + 1, 5 * EVENTS_PER_ROW + 2]);
    expect(byTask(2).map((e) => e.id)).toEqual([6 * EVENTS_PER_ROW, 6 * EVENTS_PER_ROW + 1]);
  });

  it('starts a new row after 16 events of one task, so every id is unique', () => {
    const events = Array.from({ length: EVENTS_PER_ROW * 2 + 1 }, (_, i) => ev(3, `e${i}`, i));
    const rows = eventRowsOf(events);
    expect(rows.length).toBe(3);
    const back = stored(rows, 1).flatMap(eventsFromRow);
    expect(back.map((e) => e.type)).toEqual(events.map((e) => e.type));
    expect(new Set(back.map((e) => e.id)).size).toBe(events.length);
    for (let i = 1; i < back.length; i++) expect(back[i]!.id).toBeGreaterThan(back[i - 1]!.id);
  });

  it('a row with one event has no `more`, and a row from before migration 6 reads as one event', () => {
    const [row] = eventRowsOf([ev(4, 'task.submitted')]);
    expect(row![EVENT_COLUMNS.indexOf('more')]).toBeNull();
    const old = {
      id: 9,
      task_id: 4,
      run_id: null,
      at: 1,
      actor: 'alice',
      type: 'task.submitted',
      from_state: null,
      to_state: 'waiting',
      reason: null,
    };
    expect(eventsFromRow(old)).toEqual([
      {
        id: 9 * EVENTS_PER_ROW,
        taskId: 4,
        runId: null,
        at: 1,
        actor: 'alice',
        type: 'task.submitted',
        from: null,
        to: 'waiting',
        reason: null,
      },
    ]);
  });
});
