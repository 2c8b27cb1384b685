// What the occurrence loop does with one recurring definition that came due: catch-up (src/domain/recurrence)
// then the overlap policy. Pure: the store reads the definition and its live occurrences, calls this, and
// writes the plan in the same transaction.

import { type CatchUpResult, catchUp, nextOccurrence } from './recurrence.js';
import type { OverlapPolicy, ScheduleSpec } from './task.js';
import { normalizeTask, type TaskInput } from './task-spec.js';

/** A live (waiting or in-progress) occurrence of the definition. */
export interface LiveOccurrence {
  id: number;
  occurrenceAt: number;
  status: 'waiting' | 'in_progress';
  /** Held back by overlap `queue` until the previous occurrence ends. */
  held: boolean;
}

export interface DefinitionState {
  spec: ScheduleSpec;
  delayTolerance: number;
  /** Every instant ≤ watermark was already handled. */
  watermark: number;
  occurrencesSoFar: number;
  live: LiveOccurrence[];
}

export interface OccurrenceOptions {
  /** Most occurrences started at once after downtime (the most recent within tolerance). Default 1. */
  maxCatchUp?: number;
  /** Missed occurrences recorded one by one; the rest in one bulk record. Default 100. */
  maxEnumerate?: number;
  /** Overlap `queue`: at most this many held occurrences; beyond, new ones are skipped. Default 100. */
  maxQueued?: number;
}

export interface OccurrencePlan {
  /** Occurrences to create, oldest first; `held` ones wait for the previous occurrence (overlap queue). */
  create: Array<{ at: number; held: boolean }>;
  /** Live occurrences to cancel first (overlap replace). */
  cancel: number[];
  /** Due but not started because of the overlap policy. */
  skipped: Array<{ at: number; reason: string }>;
  missed: Pick<CatchUpResult, 'missed' | 'missedCount' | 'missedCountExact' | 'missedSpan'>;
  /** The new watermark (≥ the old one). */
  watermark: number;
  /** The next instant to come back at; null when the schedule is over. */
  next: number | null;
  occurrencesCreated: number;
}

export function planOccurrences(state: DefinitionState, now: number, opts: OccurrenceOptions = {}): OccurrencePlan {
  const { spec } = state;
  const policy: OverlapPolicy = spec.overlap ?? 'skip';
  const maxQueued = opts.maxQueued ?? 100;
  const cu = catchUp(spec, state.watermark, now, state.delayTolerance, {
    maxCatchUp: opts.maxCatchUp ?? 1,
    maxEnumerate: opts.maxEnumerate ?? 100,
    occurrencesSoFar: state.occurrencesSoFar,
  });
  const create: OccurrencePlan['create'] = [];
  const skipped: OccurrencePlan['skipped'] = [];
  const cancel: number[] = [];
  // What is live as each due instant is considered (earlier ones in this same plan count too).
  const live = [...state.live].sort((a, b) => a.occurrenceAt - b.occurrenceAt);
  const runnable = live.filter((l) => !l.held);
  let held = live.length - runnable.length;
  const describe = (l: { id: number; status: string }) =>
    l.id < 0
      ? 'an earlier occurrence due at the same time was just created'
      : `the previous occurrence (task ${l.id}) is ${l.status.replace('_', ' ')}`;

  for (const [i, at] of cu.run.entries()) {
    const previous = runnable[runnable.length - 1] ?? null;
    if (policy === 'allow' || (previous === null && held === 0)) {
      create.push({ at, held: false });
      runnable.push({ id: -1, occurrenceAt: at, status: 'waiting', held: false });
    } else if (policy === 'skip') {
      skipped.push({ at, reason: previous ? describe(previous) : 'earlier occurrences are still queued' });
    } else if (policy === 'queue') {
      if (held >= maxQueued) skipped.push({ at, reason: `${held} occurrences are already queued (at most ${maxQueued})` });
      else {
        create.push({ at, held: true });
        held++;
      }
    } else {
      // replace: only the newest due instant survives; every live occurrence is cancelled.
      if (i < cu.run.length - 1) {
        skipped.push({ at, reason: 'replaced by a newer occurrence due at the same time' });
        continue;
      }
      for (const l of live) if (!cancel.includes(l.id)) cancel.push(l.id);
      for (const c of create) skipped.push({ at: c.at, reason: 'replaced by a newer occurrence' });
      create.length = 0;
      create.push({ at, held: false });
    }
  }

  const watermark = Math.max(state.watermark, now);
  const occurrencesCreated = state.occurrencesSoFar + create.length;
  return {
    create,
    cancel,
    skipped,
    missed: { missed: cu.missed, missedCount: cu.missedCount, missedCountExact: cu.missedCountExact, missedSpan: cu.missedSpan },
    watermark,
    next: nextOccurrence(spec, watermark, occurrencesCreated),
    occurrencesCreated,
  };
}

/**
 * A schedule as a user wrote it (API body, CLI flags or file) → a validated ScheduleSpec. It goes through the
 * task normaliser itself, so a schedule means the same here as in a submit: same checks, same `schedule.*`
 * paths in errors.
 */
export function normalizeSchedule(input: NonNullable<TaskInput['schedule']>): ScheduleSpec {
  return normalizeTask({ command: ['true'], schedule: input }).schedule as ScheduleSpec;
}
