// The error catalogue. Every error a user can see has a stable code, an HTTP status and a message that
// names the field and what was expected. Codes never change meaning once released.

export const ErrorCodes = {
  VALIDATION_FAILED: { status: 400, title: 'the request is invalid' },
  UNKNOWN_FIELD: { status: 400, title: 'the request has a field tsched does not know' },
  BODY_TOO_LARGE: { status: 413, title: 'the request body is too large' },
  UNAUTHENTICATED: { status: 401, title: 'a valid bearer token is required' },
  FORBIDDEN: { status: 403, title: 'this token may not do that' },
  NOT_FOUND: { status: 404, title: 'no such resource' },
  TASK_NOT_FOUND: { status: 404, title: 'no such task' },
  RUN_NOT_FOUND: { status: 404, title: 'no such run' },
  WORKER_NOT_FOUND: { status: 404, title: 'no such worker' },
  TASK_FINISHED: { status: 409, title: 'the task has already finished' },
  INVALID_TRANSITION: { status: 409, title: 'the task cannot move to that state' },
  LEASE_STALE: { status: 409, title: 'the run lease token is stale' },
  IDEMPOTENCY_CONFLICT: { status: 409, title: 'the idempotency key was used for a different request' },
  NOT_RECURRING: { status: 409, title: 'the task is not a recurring task' },
  RATE_LIMITED: { status: 429, title: 'too many requests' },
  NOT_LEADER: { status: 503, title: 'this replica is not the scheduling leader' },
  STORE_UNAVAILABLE: { status: 503, title: 'the database is unavailable' },
  INTERNAL: { status: 500, title: 'internal error' },
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/** One problem with one field of the input. `path` is a JSON pointer-ish dotted path like `resources.cpus`. */
export interface FieldIssue {
  path: string;
  message: string;
}

export class TschedError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly issues: FieldIssue[];
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, opts: { issues?: FieldIssue[]; details?: Record<string, unknown> } = {}) {
    super(message);
    this.name = 'TschedError';
    this.code = code;
    this.status = ErrorCodes[code].status;
    this.issues = opts.issues ?? [];
    this.details = opts.details;
  }

  toJSON(): ErrorBody {
    const body: ErrorBody = { error: { code: this.code, message: this.message } };
    if (this.issues.length > 0) body.error.issues = this.issues;
    if (this.details) body.error.details = this.details;
    return body;
  }
}

/** The JSON body of every non-2xx API response. */
export interface ErrorBody {
  error: { code: string; message: string; issues?: FieldIssue[]; details?: Record<string, unknown> };
}

export function validationError(issues: FieldIssue[]): TschedError {
  const first = issues[0];
  const message = first ? `${first.path}: ${first.message}` : 'invalid input';
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
  return new TschedError('VALIDATION_FAILED', message + more, { issues });
}

export function isTschedError(e: unknown): e is TschedError {
  return e instanceof TschedError;
}
