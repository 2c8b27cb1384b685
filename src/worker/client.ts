// The HTTP side of the worker protocol: JSON POSTs with the bearer token over node:http (keep-alive),
// errors turned into ProtocolError with the server's stable code, and the retry policy (exponential backoff
// with full jitter) for when the server is away.

import http from 'node:http';
import https from 'node:https';

export class ProtocolError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** Worth retrying: the server is down, restarting, overloaded or not reachable. */
export function isTransient(e: unknown): boolean {
  if (e instanceof ProtocolError) return e.status >= 500 || e.status === 429 || e.status === 408;
  return true; // network errors: ECONNREFUSED, ECONNRESET, timeouts, aborted bodies
}

export function isWorkerNotFound(e: unknown): boolean {
  return e instanceof ProtocolError && e.status === 404 && e.code === 'WORKER_NOT_FOUND';
}

/** Full jitter: uniform in [0, min(cap, base·2^attempt)]. */
export function backoffDelay(attempt: number, baseMs = 200, capMs = 10_000): number {
  return Math.random() * Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
}

export class ProtocolClient {
  private readonly base: URL;
  private readonly auth: string;
  private readonly request: typeof http.request;
  // Keep-alive sockets: the long poll and the report each hold one.
  private readonly agent: http.Agent;

  constructor(server: string, token: string) {
    this.base = new URL(server.replace(/\/+$/, ''));
    this.auth = `Bearer ${token}`;
    const tls = this.base.protocol === 'https:';
    this.request = tls ? https.request : http.request;
    this.agent = tls ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true });
  }

  /**
   * POSTs JSON and parses the JSON answer. node:http rather than fetch: the agent sends several requests per
   * batch of runs, and fetch's per-request machinery (web streams, AbortSignal.any) was a third of its CPU.
   */
  post<T>(path: string, body: unknown, opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<T> {
    const payload = Buffer.from(JSON.stringify(body));
    return new Promise<T>((resolve, reject) => {
      if (opts.signal?.aborted) {
        reject(new Error(`${path}: aborted`));
        return;
      }
      const req = this.request(
        {
          protocol: this.base.protocol,
          hostname: this.base.hostname,
          port: this.base.port,
          path: this.base.pathname.replace(/\/$/, '') + path,
          method: 'POST',
          agent: this.agent,
          headers: { 'content-type': 'application/json', 'content-length': payload.length, authorization: this.auth },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (e) => fail(e));
          res.on('end', () => {
            cleanup();
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            if (status < 200 || status >= 300) {
              let code = 'HTTP_ERROR';
              let message = `${status} ${res.statusMessage ?? ''}`.trim();
              try {
                const b = JSON.parse(text) as { error?: { code?: string; message?: string } };
                code = b.error?.code ?? code;
                message = b.error?.message ?? message;
              } catch {
                /* not our JSON: a proxy page */
              }
              reject(new ProtocolError(status, code, `${path}: ${message}`));
              return;
            }
            try {
              resolve((text === '' ? {} : JSON.parse(text)) as T);
            } catch (e) {
              reject(new Error(`${path}: the answer is not JSON: ${(e as Error).message}`));
            }
          });
        },
      );
      const timer = setTimeout(
        () => req.destroy(new Error(`${path}: timed out after ${opts.timeoutMs ?? 30_000} ms`)),
        opts.timeoutMs ?? 30_000,
      );
      const onAbort = () => req.destroy(new Error(`${path}: aborted`));
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      const cleanup = () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      const fail = (e: Error) => {
        cleanup();
        reject(e);
      };
      req.on('error', fail);
      req.end(payload);
    });
  }

  /** Closes idle keep-alive sockets. */
  close(): void {
    this.agent.destroy();
  }
}
