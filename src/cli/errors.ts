// Exit codes and the messages the CLI prints for each kind of failure. Every message says what happened,
// where, and what to do next.

import { ApiError, ConnectionError } from '../client/index.js';
import type { FieldIssue } from '../domain/errors.js';
import { isTschedError } from '../domain/errors.js';

export const EXIT = {
  OK: 0,
  /** The task failed (submit --wait), or an unexpected error. */
  FAILED: 1,
  /** Bad flags, bad manifest, bad config. Nothing was sent. */
  USAGE: 2,
  /** No server answered. */
  UNREACHABLE: 3,
  /** The server refused the request (4xx). */
  REFUSED: 4,
  /** The server failed (5xx). */
  SERVER: 5,
} as const;

/** A mistake in how the CLI was called; exit 2. `issues` are listed one per line. */
export class UsageError extends Error {
  readonly issues: FieldIssue[];
  constructor(message: string, issues: FieldIssue[] = []) {
    super(message);
    this.name = 'UsageError';
    this.issues = issues;
  }
}

export interface ErrorContext {
  /** Where the URL and token came from, for hints. */
  urlSource?: string;
  tokenSource?: string;
  hasToken?: boolean;
  /** What the command was about, for 404s: "task 42", "worker w1", and the code that means it is missing. */
  subject?: string;
  subjectCode?: string;
}

export interface Rendered {
  message: string;
  exitCode: number;
}

export function renderError(err: unknown, ctx: ErrorContext = {}): Rendered {
  if (err instanceof UsageError) return { message: withIssues(err.message, err.issues), exitCode: EXIT.USAGE };
  if (isTschedError(err) && err.code === 'VALIDATION_FAILED') {
    return { message: withIssues('the task is invalid:', err.issues), exitCode: EXIT.USAGE };
  }
  if (err instanceof ConnectionError) {
    const from = ctx.urlSource ? ` (the URL came from ${ctx.urlSource})` : '';
    let message: string;
    if (err.kind === 'refused') {
      message =
        `cannot reach the tsched server at ${err.url}: nothing is listening there${from}.\n` +
        'Start one with `tsched up` (or `npm start` in the tsched repository), or point the CLI at a running server with --server URL or TSCHED_URL.';
    } else if (err.kind === 'timeout') {
      message = `the tsched server at ${err.url} did not answer in time${from}. It may be overloaded, or a firewall may be dropping packets.`;
    } else {
      message = `${err.message}${from}.\nCheck the URL, or pass --server URL.`;
    }
    return { message, exitCode: EXIT.UNREACHABLE };
  }
  if (err instanceof ApiError) {
    if (err.status === 401) {
      const message = ctx.hasToken
        ? `the server refused the token (it came from ${ctx.tokenSource ?? 'unknown'}): ${err.message}.\nPass the right one with --token or TSCHED_TOKEN; \`tsched up\` prints its token and writes it to the config file.`
        : 'the server wants a token and none was given.\nPass one with --token or TSCHED_TOKEN; `tsched up` prints its token and writes it to the config file.';
      return { message, exitCode: EXIT.REFUSED };
    }
    if (err.status === 404 && ctx.subject && err.code === ctx.subjectCode) return { message: `no ${ctx.subject}`, exitCode: EXIT.REFUSED };
    if (err.status >= 500) return { message: `the server failed (${err.code}): ${err.message}`, exitCode: EXIT.SERVER };
    const head = err.issues.length > 0 ? `the server refused the request (${err.code}):` : `${err.message} (${err.code})`;
    return { message: withIssues(head, err.issues), exitCode: EXIT.REFUSED };
  }
  const e = err as Error;
  return { message: `unexpected error: ${e?.stack ?? String(err)}`, exitCode: EXIT.FAILED };
}

function withIssues(head: string, issues: FieldIssue[]): string {
  if (issues.length === 0) return head;
  return [head, ...issues.map((i) => `  ${i.path}: ${i.message}`)].join('\n');
}
