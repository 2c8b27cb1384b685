import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { normalizeTask } from '../domain/task-spec.js';
import { UsageError } from './errors.js';
import { detectFormat, parseManifest, readManifestFile } from './manifest.js';

const examples = join(import.meta.dirname, '..', '..', 'examples');

function issuesOf(text: string, file: string): { message: string; issues: string[] } {
  try {
    parseManifest(text, file);
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    const u = e as UsageError;
    return { message: u.message, issues: u.issues.map((i) => `${i.path}: ${i.message}`) };
  }
  throw new Error('expected the manifest to be refused');
}

describe('example manifests', () => {
  const files = readdirSync(examples).filter((f) => /\.(ya?ml|json)$/.test(f));

  it('are all there', () => {
    expect(files.sort()).toEqual(expect.arrayContaining(['batch.json', 'docker.yaml', 'hello.yaml', 'nightly.yaml', 'report.yaml']));
  });

  it.each(files)('%s passes local validation', (f) => {
    const m = readManifestFile(join(examples, f));
    expect(m.tasks.length).toBeGreaterThan(0);
    for (const t of m.tasks) expect(() => normalizeTask(t)).not.toThrow();
  });

  it('say what they promise', () => {
    const nightly = normalizeTask(readManifestFile(join(examples, 'nightly.yaml')).tasks[0]!);
    expect(nightly.schedule).toMatchObject({ type: 'daily', at: '02:30', timezone: 'Europe/London' });
    const batch = readManifestFile(join(examples, 'batch.json'));
    expect(batch).toMatchObject({ batch: true });
    expect(batch.tasks).toHaveLength(3);
    const docker = normalizeTask(readManifestFile(join(examples, 'docker.yaml')).tasks[0]!);
    expect(docker).toMatchObject({ executor: 'docker', image: 'busybox:latest' });
    const report = normalizeTask(readManifestFile(join(examples, 'report.yaml')).tasks[0]!);
    expect(report).toMatchObject({ priority: 75, totalAttempts: 3, executionCap: 600_000, env: { REGION: 'eu-west' } });
    expect(report.script).toContain('step $i of 3');
  });
});

describe('parseManifest', () => {
  it('detects the format by extension, then by content', () => {
    expect(detectFormat('a.json', 'command: [x]')).toBe('json');
    expect(detectFormat('a.YML', '{}')).toBe('yaml');
    expect(detectFormat('<stdin>', '  {"command": ["x"]}')).toBe('json');
    expect(detectFormat('<stdin>', 'command: [x]')).toBe('yaml');
  });

  it('reads one task, a list, {tasks: [...]} and several YAML documents', () => {
    expect(parseManifest('command: [echo, hi]\n', 't.yaml')).toEqual({ tasks: [{ command: ['echo', 'hi'] }], batch: false });
    expect(parseManifest('- command: [a]\n- command: [b]\n', 't.yaml').tasks).toHaveLength(2);
    expect(parseManifest('{"tasks": [{"command": ["a"]}]}', 't.json')).toEqual({ tasks: [{ command: ['a'] }], batch: true });
    expect(parseManifest('command: [a]\n---\ncommand: [b]\n', 't.yaml')).toMatchObject({
      batch: true,
      tasks: [{ command: ['a'] }, { command: ['b'] }],
    });
  });

  it('names the file, the field and the line of a structural error', () => {
    const r = issuesOf('name: x\ncommand: [echo]\nresources:\n  cpus: two\n  memry: 1GiB\n', 'jobs/bad.yaml');
    expect(r.message).toBe('jobs/bad.yaml: the manifest is invalid (nothing was sent):');
    expect(r.issues).toEqual([
      'resources.memry: unknown field; did you mean "memory"? (line 5)',
      'resources.cpus: expected number (line 4)',
    ]);
  });

  it('names the field of a semantic error, with the task index in a batch', () => {
    const r = issuesOf(
      JSON.stringify({ tasks: [{ command: ['ok'] }, { command: ['x'], executionCap: '10 parsecs', priority: 'asap' }] }, null, 2),
      'b.json',
    );
    expect(r.message).toMatch(/^b\.json: /);
    expect(r.issues).toEqual([
      expect.stringMatching(/^tasks\[1\]\.priority: expected urgent, high, normal, low or an integer .* \(line \d+\)$/),
      expect.stringMatching(/^tasks\[1\]\.executionCap: expected a duration .*\(line \d+\)$/),
    ]);
  });

  it('explains unknown top-level fields and union mismatches', () => {
    expect(issuesOf('command: [x]\ncpus: 2\n', 'a.yaml').issues).toEqual([
      'cpus: unknown field; "cpus" belongs under "resources" (line 2)',
    ]);
    expect(issuesOf('command: [x]\nexecutor: podman\n', 'a.yaml').issues).toEqual(['executor: expected one of "shell", "docker" (line 2)']);
    expect(issuesOf('command: echo hi\n', 'a.yaml').issues).toEqual(['command: expected array (line 1)']);
    expect(issuesOf('- command: [a]\n- 42\n', 'l.yaml').issues).toEqual(['[1]: expected an object of task fields (line 2)']);
  });

  it('refuses syntax errors with a position, and empty or shapeless files', () => {
    expect(() => parseManifest('command: [echo\n', 'x.yaml')).toThrow(/^x\.yaml:\d+:\d+: not valid YAML/);
    expect(() => parseManifest('{"command": [}', 'x.json')).toThrow(/^x\.json: not valid JSON/);
    expect(() => parseManifest('  \n', 'x.yaml')).toThrow(/x\.yaml: the manifest is empty/);
    expect(() => parseManifest('[]', 'x.json')).toThrow(/the list of tasks is empty/);
    expect(() => parseManifest('"echo hi"', 'x.json')).toThrow(/expected task fields/);
    expect(() => parseManifest('tasks: [{command: [a]}]\nname: x\n', 'x.yaml')).toThrow(/name: unknown field/);
  });

  it('reports a missing file by name', () => {
    expect(() => readManifestFile('/nonexistent/t.yaml')).toThrow('/nonexistent/t.yaml: no such file');
  });

  it('keeps a multi-line script exactly', () => {
    const text = readFileSync(join(examples, 'report.yaml'), 'utf8');
    expect(parseManifest(text, 'report.yaml').tasks[0]?.script?.startsWith('#!/bin/sh\nset -eu\n')).toBe(true);
  });
});
