// The HTTP side of the worker protocol: JSON POSTs with the bearer token over Node's fetch (undici, keep-alive),
// errors turned into ProtocolError with the server's stable code, and the retry policy (exponential backoff
// with full jitter) for when the server is away.

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
  private readonly base: string;
  private readonly auth: string;

  constructor(server: string, token: string) {
    this.base = server.replace(/\/+$/, '');
    this.auth = `Bearer ${token}`;
  }

  async post<T>(path: string, body: unknown, opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<T> {
    const timeout = AbortSignal.timeout(opts.timeoutMs ?? 30_000);
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    const res = await fetch(this.base + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: this.auth },
      body: JSON.stringify(body),
      signal,
    });
    const text = await res.text();
    if (!res.ok) {
      let code = 'HTTP_ERROR';
      let message = `${res.status} ${res.statusText}`;
      try {
        const b = JSON.parse(text) as { error?: { code?: string; message?: string } };
        code = b.error?.code ?? code;
        message = b.error?.message ?? message;
      } catch {
        /* not our JSON: a proxy page */
      }
      throw new ProtocolError(res.status, code, `${path}: ${message}`);
    }
    return (text === '' ? {} : JSON.parse(text)) as T;
  }
}
