// Webhook notifications: HMAC-SHA256 signed, delivered from a durable outbox and retried with backoff.
// Receivers verify `X-Tsched-Signature: sha256=<hex>` over `<timestamp>.<body>` with the shared secret,
// and reject timestamps older than a few minutes (replay protection), as Stripe and GitHub do.

import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'x-tsched-signature';
export const TIMESTAMP_HEADER = 'x-tsched-timestamp';
export const EVENT_HEADER = 'x-tsched-event';
export const DELIVERY_HEADER = 'x-tsched-delivery';

export function sign(secret: string, timestamp: number, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** For receivers (and tests): constant-time check of a signature within a tolerance window. */
export function verify(
  secret: string,
  header: string | undefined,
  timestamp: string | undefined,
  body: string,
  nowMs: number,
  toleranceMs = 300_000,
): boolean {
  if (!header || !timestamp) return false;
  const ts = Number(timestamp);
  if (!Number.isFinite(ts) || Math.abs(nowMs - ts * 1000) > toleranceMs) return false;
  const expected = Buffer.from(sign(secret, ts, body));
  const got = Buffer.from(header);
  return expected.length === got.length && timingSafeEqual(expected, got);
}

export interface Delivery {
  id: number;
  url: string;
  event: string;
  payload: unknown;
}

/** One attempt. Resolves to whether the receiver accepted it (2xx). Never throws. */
export async function deliver(
  d: Delivery,
  secret: string,
  nowMs: number,
  timeoutMs = 10_000,
): Promise<{ ok: boolean; status: number | null; error?: string }> {
  const body = JSON.stringify({ id: d.id, event: d.event, data: d.payload });
  const ts = Math.floor(nowMs / 1000);
  try {
    const res = await fetch(d.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'tsched-webhooks',
        [SIGNATURE_HEADER]: sign(secret, ts, body),
        [TIMESTAMP_HEADER]: String(ts),
        [EVENT_HEADER]: d.event,
        [DELIVERY_HEADER]: String(d.id),
      },
      body,
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'manual',
    });
    await res.arrayBuffer().catch(() => undefined);
    return { ok: res.status >= 200 && res.status < 300, status: res.status };
  } catch (err) {
    return { ok: false, status: null, error: (err as Error).message };
  }
}

/** Backoff between delivery attempts: 1 s, 2 s, 4 s … capped at 10 min; give up after `maxAttempts`. */
export function nextDeliveryDelay(attempt: number): number {
  return Math.min(600_000, 1000 * 2 ** Math.max(0, attempt - 1));
}
