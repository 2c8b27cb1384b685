// Bad input gets the right 4xx with a stable code and a message naming the field — and nothing is written.

import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, startUp, type UpProcess } from './helpers/processes.js';

describe('API input validation against the real server', () => {
  let up: UpProcess;
  let call: ReturnType<typeof api>;

  beforeAll(async () => {
    // No local worker needed: nothing should run.
    up = await startUp({ args: ['--no-local-worker'] });
    call = api(up.url, up.token);
  });
  afterAll(async () => {
    await up?.stop('SIGKILL');
  });

  async function count(): Promise<number> {
    const r = await call('GET', '/v1/tasks?limit=1000');
    expect(r.status).toBe(200);
    return r.json.tasks.length;
  }

  it.each([
    ['an unknown field', { command: ['true'], colour: 'blue' }, 400, 'UNKNOWN_FIELD', 'colour'],
    ['a nested unknown field', { command: ['true'], resources: { gpus: 1 } }, 400, 'UNKNOWN_FIELD', 'resources.gpus'],
    ['cpus -1', { command: ['true'], resources: { cpus: -1 } }, 400, 'VALIDATION_FAILED', 'resources.cpus'],
    ['memory "lots"', { command: ['true'], resources: { memory: 'lots' } }, 400, 'VALIDATION_FAILED', 'resources.memory'],
    ['totalAttempts 0', { command: ['true'], totalAttempts: 0 }, 400, 'VALIDATION_FAILED', 'totalAttempts'],
    ['executionCap "-5m"', { command: ['true'], executionCap: '-5m' }, 400, 'VALIDATION_FAILED', 'executionCap'],
    ['a string command', { command: 'echo hi' }, 400, 'VALIDATION_FAILED', 'command'],
    ['a bad executor', { command: ['true'], executor: 'vm' }, 400, 'VALIDATION_FAILED', 'executor'],
    [
      'a bad task in a batch',
      { tasks: [{ command: ['true'] }, { command: ['true'], totalAttempts: 0 }] },
      400,
      'VALIDATION_FAILED',
      'tasks[1].totalAttempts',
    ],
  ])('%s → %s %s naming %s, nothing written', async (_name, body, status, code, field) => {
    const before = await count();
    const r = await call('POST', '/v1/tasks', body);
    expect(r.status).toBe(status);
    expect(r.json.error.code).toBe(code);
    expect(r.json.error.message).toContain(field);
    expect(r.json.error.issues.map((i: { path: string }) => i.path)).toContain(field);
    expect(await count()).toBe(before);
  });

  it('a 10 MB body → 413 BODY_TOO_LARGE, nothing written', async () => {
    const before = await count();
    // A 10 MB upload is refused from its Content-Length alone, before the body is read: send the headers
    // and a first slice, then read the answer (writing all of it races the server closing the socket).
    const body = JSON.stringify({ command: ['echo', 'x'.repeat(10 * 1024 * 1024)] });
    const r = await new Promise<{ status: number; json: any }>((resolve, reject) => {
      const u = new URL(`${up.url}/v1/tasks`);
      const req = request(
        {
          host: u.hostname,
          port: u.port,
          path: u.pathname,
          method: 'POST',
          headers: { authorization: `Bearer ${up.token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          let text = '';
          res.on('data', (d) => {
            text += d;
          });
          res.on('end', () => {
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) });
            req.destroy();
          });
        },
      );
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (e.code !== 'EPIPE' && e.code !== 'ECONNRESET') reject(e);
      });
      req.write(body.slice(0, 64 * 1024));
    });
    expect(r.status).toBe(413);
    expect(r.json.error.code).toBe('BODY_TOO_LARGE');
    expect(await count()).toBe(before);
  });

  it('malformed JSON → 400 naming the body', async () => {
    const r = await call('POST', '/v1/tasks', '{"command": [');
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('VALIDATION_FAILED');
    expect(r.json.error.message).toMatch(/JSON/);
  });

  it('a missing token → 401 UNAUTHENTICATED; a wrong one too; nothing written', async () => {
    const before = await count();
    const anon = await api(up.url, null)('POST', '/v1/tasks', { command: ['true'] });
    expect(anon.status).toBe(401);
    expect(anon.json.error.code).toBe('UNAUTHENTICATED');
    expect(anon.json.error.message).toMatch(/Authorization/);
    const wrong = await api(up.url, 'tsk_nope')('GET', '/v1/tasks');
    expect(wrong.status).toBe(401);
    expect(await count()).toBe(before);
  });

  it('a worker token cannot submit tasks (403)', async () => {
    const r = await api(up.url, up.workerToken)('POST', '/v1/tasks', { command: ['true'] });
    expect(r.status).toBe(403);
    expect(r.json.error.code).toBe('FORBIDDEN');
  });

  it('an unknown task → 404 TASK_NOT_FOUND; a bad id → 400 naming params.id', async () => {
    const r = await call('GET', '/v1/tasks/999999');
    expect(r.status).toBe(404);
    expect(r.json.error.code).toBe('TASK_NOT_FOUND');
    const bad = await call('GET', '/v1/tasks/abc');
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toContain('params.id');
  });

  it('a bad status filter names the querystring field', async () => {
    const r = await call('GET', '/v1/tasks?status=running');
    expect(r.status).toBe(400);
    expect(r.json.error.message).toContain('querystring.status');
  });

  it('a valid submit is 201 and durable; OpenAPI documents it', async () => {
    const r = await call('POST', '/v1/tasks', { command: ['true'], name: 'ok' });
    expect(r.status).toBe(201);
    expect(r.json.task).toMatchObject({ name: 'ok', status: 'waiting', owner: 'admin' });
    const spec = await api(up.url, null)('GET', '/openapi.json');
    expect(spec.status).toBe(200);
    expect(Object.keys(spec.json.paths)).toEqual(expect.arrayContaining(['/v1/tasks', '/v1/tasks/{id}', '/v1/workers/{id}/poll']));
  });

  it('users see only their own tasks; the admin sees all with all=true', async () => {
    const mk = async (user: string) => {
      const r = await call('POST', '/v1/tokens', { user });
      expect(r.status).toBe(201);
      return api(up.url, r.json.token as string);
    };
    const alice = await mk('alice');
    const bob = await mk('bob');
    const t = await alice('POST', '/v1/tasks', { command: ['true'], name: 'alice-task' });
    expect(t.status).toBe(201);
    expect(t.json.task.owner).toBe('alice');
    const id = t.json.task.id;
    expect((await alice('GET', `/v1/tasks/${id}`)).status).toBe(200);
    expect((await bob('GET', `/v1/tasks/${id}`)).status).toBe(404);
    expect((await bob('POST', `/v1/tasks/${id}/cancel`)).status).toBe(404);
    expect((await bob('GET', '/v1/tasks')).json.tasks).toHaveLength(0);
    const all = await call('GET', '/v1/tasks?all=true&limit=1000');
    expect(all.json.tasks.map((x: { id: number }) => x.id)).toContain(id);
    // Only an admin issues tokens.
    expect((await alice('POST', '/v1/tokens', { user: 'mallory' })).status).toBe(403);
  });
});
