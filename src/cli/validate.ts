// Local validation of task inputs before anything is sent: first the same TypeBox schema the server uses
// (structure, unknown fields), then normalizeTask from src/domain (meaning). Issues name the field in the
// same dotted form the server uses ("tasks[1].resources.cpus").

import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { FieldIssue } from '../domain/errors.js';
import { isTschedError } from '../domain/errors.js';
import type { TaskInput } from '../domain/task-spec.js';
import { normalizeTask } from '../domain/task-spec.js';
import { TaskInputSchema } from '../protocol/schemas.js';

/** "/resources/portNames/0" → "resources.portNames[0]". */
export function pointerToPath(pointer: string): string {
  let out = '';
  for (const seg of pointer.split('/').slice(1)) {
    const key = seg.replace(/~1/g, '/').replace(/~0/g, '~');
    if (/^\d+$/.test(key)) out += `[${key}]`;
    else out += out ? `.${key}` : key;
  }
  return out;
}

/** Structural issues of one task input against TaskInputSchema, with readable messages. */
export function schemaIssues(value: unknown, prefix = ''): FieldIssue[] {
  const issues: FieldIssue[] = [];
  const seen = new Set<string>();
  for (const e of Value.Errors(TaskInputSchema, value)) {
    const path = pointerToPath(e.path);
    // TypeBox reports a parent's union failure and its children's; one line per field is enough.
    if (seen.has(path)) continue;
    seen.add(path);
    let message = e.message;
    if (e.message === 'Unexpected property') {
      message = `unknown field${suggest(path)}`;
    } else if (e.message === 'Expected union value') {
      message = `expected ${describeSchema(e.schema)}`;
    } else {
      message = message.charAt(0).toLowerCase() + message.slice(1);
    }
    issues.push({ path: prefix + (path || '(task)'), message });
  }
  return issues;
}

function describeSchema(schema: TSchema): string {
  const any = (schema as { anyOf?: TSchema[] }).anyOf;
  if (!any) return (schema as { type?: string }).type ?? 'another value';
  const consts = any.map((s) => (s as { const?: unknown }).const);
  if (consts.every((c) => c !== undefined)) return `one of ${consts.map((c) => JSON.stringify(c)).join(', ')}`;
  const names = any.map((s) => {
    const t = (s as { type?: string }).type;
    if (t === 'array') return 'a list';
    if (t === 'integer') return 'an integer';
    return t ? `a ${t}` : 'another value';
  });
  return [...new Set(names)].join(' or ');
}

const RESOURCE_KEYS = ['category', 'cpus', 'memory', 'ports', 'portNames'];

/** A hint for an unknown field: a near-miss of a known one, or "put it under resources". */
function suggest(path: string): string {
  const parts = path.split('.');
  const key = (parts[parts.length - 1] ?? '').replace(/\[\d+\]$/, '');
  const parentPath = parts.slice(0, -1).join('.');
  if (parentPath === '' && RESOURCE_KEYS.includes(key)) return `; "${key}" belongs under "resources"`;
  const parentSchema = parentPath === '' ? TaskInputSchema : ((TaskInputSchema.properties as Record<string, TSchema>)[parentPath] ?? null);
  const props = (parentSchema as { properties?: Record<string, unknown> } | null)?.properties;
  if (!props) return '';
  const best = Object.keys(props)
    .map((k) => [k, distance(k.toLowerCase(), key.toLowerCase())] as const)
    .sort((a, b) => a[1] - b[1])[0];
  return best && best[1] <= Math.max(2, Math.floor(key.length / 3)) ? `; did you mean "${best[0]}"?` : '';
}

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)] as number[]);
  for (let j = 1; j <= b.length; j++) (d[0] as number[])[j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const row = d[i] as number[];
      const prev = d[i - 1] as number[];
      row[j] = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  return (d[a.length] as number[])[b.length] as number;
}

/**
 * Validates a list of task inputs (schema, then semantics). Returns every issue found; an empty list means
 * the server will accept them (barring server-side limits). `prefixFor(i)` names each task in the paths.
 */
export function validateTasks(inputs: unknown[], prefixFor: (i: number) => string): FieldIssue[] {
  const issues: FieldIssue[] = [];
  inputs.forEach((input, i) => {
    const prefix = prefixFor(i);
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      issues.push({ path: prefix.replace(/\.$/, '') || '(task)', message: 'expected an object of task fields' });
      return;
    }
    const structural = schemaIssues(input, prefix);
    if (structural.length > 0) {
      issues.push(...structural);
      return; // semantic checks on a malformed object would only repeat the same problems
    }
    try {
      normalizeTask(input as TaskInput, undefined, prefix);
    } catch (err) {
      if (isTschedError(err)) issues.push(...err.issues);
      else throw err;
    }
  });
  return issues;
}
