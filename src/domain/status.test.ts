import { describe, expect, it } from 'vitest';
import { TschedError } from './errors.js';
import {
  isLiveRunState,
  nextRunState,
  nextTaskStatus,
  RUN_OUTCOMES,
  RUN_STATES,
  type RunEvent,
  type RunState,
  TASK_STATUSES,
  type TaskEvent,
  type TaskStatus,
  taskEventForOutcome,
  transitionTask,
} from './status.js';

// The complete legal table; everything not listed here must be refused.
const LEGAL: Array<[TaskStatus, TaskEvent, TaskStatus]> = [
  ['waiting', 'claim', 'in_progress'],
  ['in_progress', 'succeed', 'done'],
  ['in_progress', 'retry', 'waiting'],
  ['in_progress', 'fail', 'failed'],
  ['waiting', 'fail', 'failed'],
  ['waiting', 'cancel', 'cancelled'],
  ['in_progress', 'cancel', 'cancelled'],
  ['failed', 'requeue', 'waiting'],
  ['cancelled', 'requeue', 'waiting'],
  ['waiting', 'exhaust', 'done'],
];
const EVENTS: TaskEvent[] = ['claim', 'succeed', 'retry', 'fail', 'cancel', 'requeue', 'exhaust'];

describe('task state machine', () => {
  for (const from of TASK_STATUSES) {
    for (const ev of EVENTS) {
      const legal = LEGAL.find(([f, e]) => f === from && e === ev);
      it(`${from} --${ev}--> ${legal ? legal[2] : 'refused'}`, () => {
        expect(nextTaskStatus(from, ev)).toBe(legal ? legal[2] : null);
        if (legal) expect(transitionTask(from, ev)).toBe(legal[2]);
        else {
          const err = (() => {
            try {
              transitionTask(from, ev);
            } catch (e) {
              return e;
            }
            return null;
          })();
          expect(err).toBeInstanceOf(TschedError);
          expect((err as TschedError).status).toBe(409);
          expect(['TASK_FINISHED', 'INVALID_TRANSITION']).toContain((err as TschedError).code);
        }
      });
    }
  }

  it('says the task is finished when cancelling a done task', () => {
    expect(() => transitionTask('done', 'cancel')).toThrow(/already done/);
  });

  it('done is absorbing: no event leaves it', () => {
    for (const ev of EVENTS) expect(nextTaskStatus('done', ev)).toBeNull();
  });
});

describe('run state machine', () => {
  const RUN_EVENTS: RunEvent[] = ['start', ...RUN_OUTCOMES];
  for (const from of RUN_STATES) {
    for (const ev of RUN_EVENTS) {
      let expected: RunState | null = null;
      if (ev === 'start') expected = from === 'assigned' ? 'running' : null;
      else if (from === 'assigned' || from === 'running') expected = ev;
      it(`${from} --${ev}--> ${expected ?? 'refused'}`, () => {
        expect(nextRunState(from, ev)).toBe(expected);
      });
    }
  }
  it('only assigned and running are live', () => {
    expect(RUN_STATES.filter(isLiveRunState)).toEqual(['assigned', 'running']);
  });
});

describe('outcome → task event', () => {
  it('maps each outcome given attempts left and retryability', () => {
    expect(taskEventForOutcome('succeeded', 0, true)).toBe('succeed');
    // A run still owning its task ends cancelled only when a worker drains: retried, not a user cancel.
    expect(taskEventForOutcome('cancelled', 5, true)).toBe('retry');
    expect(taskEventForOutcome('cancelled', 0, true)).toBe('fail');
    for (const o of ['failed', 'timed_out', 'lost'] as const) {
      expect(taskEventForOutcome(o, 1, true)).toBe('retry');
      expect(taskEventForOutcome(o, 0, true)).toBe('fail');
      expect(taskEventForOutcome(o, 3, false)).toBe('fail');
    }
  });
});
