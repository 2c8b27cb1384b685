// Maps every error to the API's ErrorBody with a stable code. Fastify's own validation and body errors are
// translated here so that users see one shape and one catalogue.

import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { FieldIssue } from '../domain/errors.js';
import { TschedError, validationError } from '../domain/errors.js';

interface AjvError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}

function pathOf(context: string | undefined, instancePath: string): string {
  const inner = instancePath
    .split('/')
    .filter(Boolean)
    .map((seg) => (/^\d+$/.test(seg) ? `[${seg}]` : `.${seg}`))
    .join('')
    .replace(/^\./, '');
  if (context === 'body') return inner || '(body)';
  return inner ? `${context}.${inner}` : (context ?? '(request)');
}

/** Ajv errors → field issues, grouped by field; unknown fields first and with their own code. */
export function fromAjv(errors: AjvError[], context: string | undefined): TschedError {
  const unknown: FieldIssue[] = [];
  const byPath = new Map<string, AjvError[]>();
  for (const e of errors) {
    if (e.keyword === 'additionalProperties') {
      const field = String(e.params.additionalProperty);
      const base = pathOf(context, e.instancePath);
      const path = base === '(body)' ? field : `${base}.${field}`;
      if (!unknown.some((u) => u.path === path)) unknown.push({ path, message: 'unknown field; remove it or check its spelling' });
      continue;
    }
    let path = pathOf(context, e.instancePath);
    if (e.keyword === 'required')
      path = path === '(body)' ? String(e.params.missingProperty) : `${path}.${String(e.params.missingProperty)}`;
    const list = byPath.get(path) ?? [];
    list.push(e);
    byPath.set(path, list);
  }
  const other: FieldIssue[] = [];
  for (const [path, errs] of byPath) {
    // A union (anyOf) reports one error per branch: summarise them as the allowed values or types.
    const consts = errs.filter((e) => e.keyword === 'const').map((e) => JSON.stringify(e.params.allowedValue));
    const types = [...new Set(errs.filter((e) => e.keyword === 'type').map((e) => String(e.params.type)))];
    const first = errs.find((e) => e.keyword !== 'anyOf') ?? errs[0]!;
    let message: string;
    if (first.keyword === 'required') message = 'required';
    else if (consts.length > 0) message = `expected one of ${consts.join(', ')}`;
    else if (types.length > 0 && errs.every((e) => e.keyword === 'type' || e.keyword === 'anyOf'))
      message = `expected ${types.join(' or ')}`;
    else message = first.message ?? first.keyword;
    other.push({ path, message });
  }
  if (unknown.length > 0) {
    const first = unknown[0] as FieldIssue;
    return new TschedError(
      'UNKNOWN_FIELD',
      `${first.path}: unknown field${unknown.length > 1 ? ` (and ${unknown.length - 1} more)` : ''}`,
      {
        issues: [...unknown, ...other],
      },
    );
  }
  return validationError(other);
}

export function toTschedError(err: unknown): TschedError {
  if (err instanceof TschedError) return err;
  const fe = err as FastifyError & { validation?: AjvError[]; validationContext?: string };
  if (fe && Array.isArray(fe.validation)) return fromAjv(fe.validation, fe.validationContext);
  if (fe?.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || fe?.statusCode === 413)
    return new TschedError('BODY_TOO_LARGE', 'the request body is larger than the server accepts (see bodyLimit)');
  if (fe?.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || fe?.statusCode === 415)
    return new TschedError('VALIDATION_FAILED', 'expected Content-Type: application/json', {
      issues: [{ path: '(body)', message: 'expected JSON' }],
    });
  if (fe?.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return validationError([{ path: '(body)', message: 'expected a JSON body' }]);
  if (
    fe instanceof SyntaxError ||
    fe?.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ||
    (fe?.statusCode === 400 && /JSON/i.test(fe.message ?? ''))
  )
    return validationError([{ path: '(body)', message: `expected valid JSON: ${fe.message}` }]);
  if (fe?.statusCode === 429) return new TschedError('RATE_LIMITED', fe.message || 'too many requests; slow down');
  if (fe?.statusCode === 404) return new TschedError('NOT_FOUND', fe.message);
  if (isStoreDown(err)) return new TschedError('STORE_UNAVAILABLE', 'the database is unavailable; retry shortly');
  if (fe?.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) return new TschedError('VALIDATION_FAILED', fe.message);
  return new TschedError('INTERNAL', 'internal error');
}

/** Connection-level failures of the database: the API answers 503 with Retry-After instead of 500. */
export function isStoreDown(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | null;
  if (!e) return false;
  // 57014: a statement cancelled by statement_timeout (an overloaded or locked database): retry shortly too.
  const codes = [
    'ECONNREFUSED',
    'ECONNRESET',
    'ETIMEDOUT',
    'EPIPE',
    '57P01',
    '57P02',
    '57P03',
    '57014',
    '08000',
    '08003',
    '08006',
    '53300',
  ];
  if (e.code && codes.includes(e.code)) return true;
  return /Connection terminated|connection is closed|Client has encountered a connection error|timeout exceeded when trying to connect/i.test(
    e.message ?? '',
  );
}

export function sendError(reply: FastifyReply, req: FastifyRequest, err: unknown): FastifyReply {
  const te = toTschedError(err);
  if (te.code === 'INTERNAL') req.log.error({ err }, 'internal error');
  if (te.code === 'STORE_UNAVAILABLE' || te.code === 'NOT_LEADER') reply.header('Retry-After', '2');
  return reply.status(te.status).send(te.toJSON());
}
