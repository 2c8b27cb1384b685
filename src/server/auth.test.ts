// The token cache: concurrent requests share one lookup, and a failed lookup is asked again.

import { describe, expect, it } from 'vitest';
import type { Store, TokenRecord } from '../store/port.js';
import { Authenticator, hashToken } from './auth.js';

function storeWith(findToken: (h: string) => Promise<TokenRecord | null>): Store {
  return { findToken } as unknown as Store;
}

describe('Authenticator', () => {
  it('lets concurrent requests share one lookup of the same token', async () => {
    let lookups = 0;
    const auth = new Authenticator(
      storeWith(async (h) => {
        lookups++;
        await new Promise((r) => setTimeout(r, 10));
        return { tokenHash: h, userId: 'alice', role: 'user', name: 't' };
      }),
    );
    const all = await Promise.all(Array.from({ length: 50 }, () => auth.authenticate('Bearer tok')));
    expect(all.every((p) => p.userId === 'alice')).toBe(true);
    expect(lookups).toBe(1);
  });

  it('does not keep a failed lookup, nor let it hide an unknown token', async () => {
    let fail = true;
    const auth = new Authenticator(
      storeWith(async (h) => {
        if (fail) throw Object.assign(new Error('down'), { code: 'STORE_UNAVAILABLE' });
        return h === hashToken('good') ? { tokenHash: h, userId: 'bob', role: 'user', name: 't' } : null;
      }),
    );
    await expect(auth.authenticate('Bearer good')).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    fail = false;
    expect((await auth.authenticate('Bearer good')).userId).toBe('bob');
    await expect(auth.authenticate('Bearer bad')).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
  });
});
