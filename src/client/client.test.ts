// The SDK against a real HTTP server (node:http) that speaks the API's wire format: headers sent,
// error bodies turned into ApiError, connection failures into ConnectionError, SSE log follow.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiError, ConnectionError, type FollowItem, TschedClient } from './index.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

let servers: Server[] = [];
afterEach(async () => {
  for (const s of servers) s.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  servers = [];
});

async function serve(
  handler: (req: IncomingMessage, res: ServerResponse, body: string, n: number) => void,
): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => {
      body += d;
    });
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      handler(req, res, body, seen.length);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

const TASK = { id: 42, name: 'echo hi', status: 'waiting' };

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe('TschedClient', () => {
  it('submits with a bearer token and a random idempotency key, and reads a replay', async () => {
    const { url, seen } = await serve((_req, res, _body, n) =>
      n === 1 ? sendJson(res, 201, { task: TASK }) : sendJson(res, 200, { task: TASK }, { 'Idempotent-Replayed': 'true' }),
    );
    const c = new TschedClient({ url: `${url}/`, token: 'sekret' });
    const task = await c.submit({ command: ['echo', 'hi'] });
    expect(task).toEqual(TASK);
    expect(seen[0]).toMatchObject({ method: 'POST', url: '/v1/tasks' });
    expect(seen[0]?.headers.authorization).toBe('Bearer sekret');
    expect(seen[0]?.headers['content-type']).toBe('application/json');
    expect(seen[0]?.headers['idempotency-key']).toMatch(/^[0-9a-f-]{36}$/);
    expect(JSON.parse(seen[0]?.body ?? '')).toEqual({ command: ['echo', 'hi'] });

    const again = await c.submitDetailed({ command: ['echo', 'hi'] }, { idempotencyKey: 'k1' });
    expect(again).toEqual({ tasks: [TASK], replayed: true });
    expect(seen[1]?.headers['idempotency-key']).toBe('k1');
  });

  it('sends a batch as {tasks} and returns the list', async () => {
    const { url, seen } = await serve((_req, res) => sendJson(res, 201, { tasks: [TASK, { ...TASK, id: 43 }] }));
    const tasks = await new TschedClient({ url }).submit([{ command: ['a'] }, { command: ['b'] }]);
    expect(tasks.map((t) => t.id)).toEqual([42, 43]);
    expect(JSON.parse(seen[0]?.body ?? '')).toEqual({ tasks: [{ command: ['a'] }, { command: ['b'] }] });
    expect(seen[0]?.headers.authorization).toBeUndefined();
  });

  it('retries a submit once after the connection drops, with the same idempotency key', async () => {
    const { url, seen } = await serve((req, res, _b, n) => {
      if (n === 1)
        req.socket.destroy(); // the network fails before an answer
      else sendJson(res, 201, { task: TASK });
    });
    const task = await new TschedClient({ url }).submit({ command: ['x'] });
    expect(task.id).toBe(42);
    expect(seen).toHaveLength(2);
    expect(seen[1]?.headers['idempotency-key']).toBe(seen[0]?.headers['idempotency-key']);
  });

  it('does not retry a cancel (not idempotent to repeat blindly)', async () => {
    const { url, seen } = await serve((req) => req.socket.destroy());
    await expect(new TschedClient({ url }).cancel(1)).rejects.toBeInstanceOf(ConnectionError);
    expect(seen).toHaveLength(1);
  });

  it('turns error bodies into ApiError with code and field issues', async () => {
    const { url } = await serve((_req, res) =>
      sendJson(res, 400, {
        error: { code: 'VALIDATION_FAILED', message: 'resources.cpus: bad', issues: [{ path: 'resources.cpus', message: 'bad' }] },
      }),
    );
    const err = await new TschedClient({ url }).submit({ command: ['x'] }).catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 400, code: 'VALIDATION_FAILED', issues: [{ path: 'resources.cpus', message: 'bad' }] });
  });

  it('turns a non-JSON error page into ApiError with HTTP_<status>', async () => {
    const { url } = await serve((_req, res) => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<h1>Bad Gateway</h1>');
    });
    const err = await new TschedClient({ url }).health().catch((e) => e);
    expect(err).toMatchObject({ name: 'ApiError', status: 502, code: 'HTTP_502' });
  });

  it('throws ConnectionError naming the URL when nothing listens', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const err = await new TschedClient({ url }).listTasks().catch((e) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err).toMatchObject({ url, kind: 'refused' });
    expect(err.message).toContain(url);
  });

  it('times out per request', async () => {
    const { url } = await serve(() => {
      /* never answers */
    });
    const err = await new TschedClient({ url, timeoutMs: 200 }).workers().catch((e) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err.kind).toBe('timeout');
  });

  it('builds list, logs and drain URLs', async () => {
    const { url, seen } = await serve((req, res) => {
      if (req.url?.startsWith('/v1/tasks?')) sendJson(res, 200, { tasks: [], next: null });
      else if (req.url?.includes('/logs')) sendJson(res, 200, { runId: 3, chunks: [], nextOffset: 10, ended: true });
      else sendJson(res, 200, { worker: { name: 'w 1', state: 'draining' } });
    });
    const c = new TschedClient({ url });
    await c.listTasks({ status: ['waiting', 'failed'], limit: 5, all: true, cursor: 'abc' });
    await c.logs(7, { run: 3, offset: 10 });
    const w = await c.drain('w 1');
    expect(w.state).toBe('draining');
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual([
      'GET /v1/tasks?status=waiting%2Cfailed&limit=5&cursor=abc&all=true',
      'GET /v1/tasks/7/logs?run=3&offset=10',
      'POST /v1/workers/w%201/drain',
    ]);
    expect(seen[2]?.body).toBe('{}');
    await expect(c.getTask(0)).rejects.toThrow(/positive integer/);
  });

  it('follows logs over SSE: chunks, a run switch, pings, and the end', async () => {
    const { url, seen } = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const chunk = (runId: number, offset: number, data: string) =>
        `event: log\ndata: ${JSON.stringify({ runId, seq: 1, offset, stream: 'stdout', at: 1, data })}\n\n`;
      const text = `: ping\n\n${chunk(5, 0, 'hé\n')}event: run\ndata: {"runId":6}\n\n${chunk(6, 0, 'again\n')}event: end\ndata: {"runId":6,"outcome":"succeeded","status":"done"}\n\n`;
      // Dribble it in small pieces to exercise the parser across reads.
      let i = 0;
      const t = setInterval(() => {
        if (i >= text.length) {
          clearInterval(t);
          res.end();
          return;
        }
        res.write(text.slice(i, i + 7));
        i += 7;
      }, 1);
    });
    const items: FollowItem[] = [];
    for await (const item of new TschedClient({ url, token: 't' }).followLogs(9)) items.push(item);
    expect(seen[0]?.url).toBe('/v1/tasks/9/logs?follow=true');
    expect(seen[0]?.headers.accept).toBe('text/event-stream');
    expect(items).toEqual([
      { runId: 5, seq: 1, offset: 0, stream: 'stdout', at: 1, data: 'hé\n' },
      { run: { runId: 6 } },
      { runId: 6, seq: 1, offset: 0, stream: 'stdout', at: 1, data: 'again\n' },
      { end: { runId: 6, outcome: 'succeeded', status: 'done' } },
    ]);
  });

  it('resumes a dropped log stream from the last byte, on the same run', async () => {
    const { url, seen } = await serve((_req, res, _b, n) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      if (n === 1) {
        res.write(`event: log\ndata: ${JSON.stringify({ runId: 5, seq: 1, offset: 0, stream: 'stdout', at: 1, data: 'ü1\n' })}\n\n`);
        res.end(); // dropped without an end event
      } else {
        res.end(`event: end\ndata: {"runId":5,"outcome":"failed"}\n\n`);
      }
    });
    const items: FollowItem[] = [];
    for await (const item of new TschedClient({ url }).followLogs(9)) items.push(item);
    expect(seen.map((s) => s.url)).toEqual(['/v1/tasks/9/logs?follow=true', '/v1/tasks/9/logs?follow=true&run=5&offset=4']);
    expect(items.at(-1)).toEqual({ end: { runId: 5, outcome: 'failed' } });
  });

  it('reports a refused follow as ApiError', async () => {
    const { url } = await serve((_req, res) => sendJson(res, 404, { error: { code: 'TASK_NOT_FOUND', message: 'no task 9' } }));
    const it = new TschedClient({ url }).followLogs(9);
    await expect(it.next()).rejects.toMatchObject({ status: 404, code: 'TASK_NOT_FOUND' });
  });
});
