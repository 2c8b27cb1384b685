// A minimal HTTP/JSON client for tsched's REST API and worker protocol, on keep-alive connections.
// Deliberately not src/client: the bench speaks the wire protocol as any third-party worker would.

import http from 'node:http';

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

export function api(base, token, method, path, body) {
  const url = new URL(path, base);
  const payload = body === undefined ? null : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method,
        agent,
        headers: {
          authorization: `Bearer ${token}`,
          ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
        },
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try {
            json = text ? JSON.parse(text) : null;
          } catch {
            json = { raw: text };
          }
          if (res.statusCode >= 400) reject(new Error(`${method} ${path}: HTTP ${res.statusCode} ${text.slice(0, 500)}`));
          else resolve(json);
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (payload) req.end(payload);
    else req.end();
  });
}

/** Every task of the given statuses, paging through GET /v1/tasks. */
export async function listAll(base, token, status) {
  const out = [];
  let cursor = null;
  for (;;) {
    const q = new URLSearchParams({ limit: '1000', ...(status ? { status } : {}), ...(cursor ? { cursor } : {}) });
    const page = await api(base, token, 'GET', `/v1/tasks?${q}`);
    out.push(...page.tasks);
    cursor = page.next ?? page.nextCursor ?? null;
    if (!cursor || page.tasks.length === 0) return out;
  }
}
