// Manifests: task files for `tsched submit -f`. YAML or JSON (by extension, else by sniffing the content),
// holding the API's task fields. One task, a list of tasks, {tasks: [...]}, or several YAML documents
// separated by `---` (each a task). Validated locally before anything is sent; every issue names the file,
// the field and, when it can be found, the line.

import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { type Document, LineCounter, parseAllDocuments, parseDocument } from 'yaml';
import type { FieldIssue } from '../domain/errors.js';
import type { TaskInput } from '../domain/task-spec.js';
import { UsageError } from './errors.js';
import { validateTasks } from './validate.js';

export interface Manifest {
  tasks: TaskInput[];
  /** Whether it was written as a batch (a list, {tasks}, or several documents): submitted all or nothing. */
  batch: boolean;
}

type Format = 'json' | 'yaml';

export function detectFormat(file: string, text: string): Format {
  const ext = extname(file).toLowerCase();
  if (ext === '.json') return 'json';
  if (ext === '.yaml' || ext === '.yml') return 'yaml';
  const first = text.trimStart()[0];
  return first === '{' || first === '[' ? 'json' : 'yaml';
}

/** Reads a manifest from a path, or from stdin for "-". */
export function readManifestFile(file: string): Manifest {
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UsageError(e.code === 'ENOENT' ? `${file}: no such file` : `${file}: cannot read it (${e.message})`);
  }
  return parseManifest(text, file === '-' ? '<stdin>' : file);
}

/** Parses and validates a manifest. Throws UsageError (exit 2) naming the file, the field and the line. */
export function parseManifest(text: string, file: string): Manifest {
  if (text.trim() === '') throw new UsageError(`${file}: the manifest is empty; expected task fields such as "command"`);
  const lines = new LineCounter();
  let data: unknown;
  let docs: Document[];
  if (detectFormat(file, text) === 'json') {
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw new UsageError(`${file}: not valid JSON: ${(err as Error).message}`);
    }
    // Parse again as YAML (a superset of JSON) only to find the line of each field for messages.
    docs = [parseDocument(text, { lineCounter: lines })];
  } else {
    docs = parseAllDocuments(text, { lineCounter: lines, prettyErrors: true }) as Document[];
    const errors = docs.flatMap((d) => d.errors);
    if (errors.length > 0) {
      const e = errors[0]!;
      const pos = e.linePos?.[0];
      const where = pos ? `:${pos.line}:${pos.col}` : '';
      throw new UsageError(`${file}${where}: not valid YAML: ${e.message.split('\n')[0]}`);
    }
    const nonEmpty = docs.filter((d) => d.contents !== null);
    docs = nonEmpty;
    data = nonEmpty.length === 1 ? nonEmpty[0]!.toJS() : nonEmpty.map((d) => d.toJS());
  }

  const multiDoc = docs.length > 1;
  let items: unknown[];
  let prefixFor: (i: number) => string;
  let batch: boolean;
  if (multiDoc) {
    items = data as unknown[];
    prefixFor = (i) => `document ${i + 1}: `;
    batch = true;
  } else if (Array.isArray(data)) {
    items = data;
    prefixFor = (i) => `[${i}].`;
    batch = true;
  } else if (typeof data === 'object' && data !== null && 'tasks' in data) {
    const { tasks, ...rest } = data as { tasks: unknown };
    if (!Array.isArray(tasks)) throw new UsageError(`${file}: tasks: expected a list of tasks`);
    const extra = Object.keys(rest);
    if (extra.length > 0) throw new UsageError(`${file}: ${extra[0]}: unknown field; a file with "tasks" holds only the list of tasks`);
    items = tasks;
    prefixFor = (i) => `tasks[${i}].`;
    batch = true;
  } else if (typeof data === 'object' && data !== null) {
    items = [data];
    prefixFor = () => '';
    batch = false;
  } else {
    throw new UsageError(`${file}: expected task fields (an object), a list of tasks, or {tasks: [...]}; got ${JSON.stringify(data)}`);
  }
  if (items.length === 0) throw new UsageError(`${file}: the list of tasks is empty`);

  const issues = validateTasks(items, prefixFor);
  if (issues.length > 0) {
    const located = issues.map((i) => ({ path: i.path, message: i.message + lineOf(i.path, docs, multiDoc, lines) }));
    throw new UsageError(`${file}: the manifest is invalid (nothing was sent):`, located);
  }
  return { tasks: items as TaskInput[], batch };
}

/** " (line 7)" for a field path, or "" when the field (or its nearest present parent) cannot be found. */
function lineOf(path: string, docs: Document[], multiDoc: boolean, lines: LineCounter): string {
  let doc = docs[0];
  let rest = path;
  const m = /^document (\d+): (.*)$/.exec(path);
  if (multiDoc && m) {
    doc = docs[Number(m[1]) - 1];
    rest = m[2] as string;
  }
  if (!doc) return '';
  const keys: Array<string | number> = [];
  for (const part of rest.match(/[^.[\]]+|\[\d+\]/g) ?? []) keys.push(part.startsWith('[') ? Number(part.slice(1, -1)) : part);
  for (let n = keys.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(keys.slice(0, n), true);
    const range = (node as { range?: [number, number, number] } | undefined)?.range;
    if (range) return ` (line ${lines.linePos(range[0]).line})`;
  }
  return '';
}

export type { FieldIssue };
