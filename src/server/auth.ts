// Bearer tokens. Only a SHA-256 of each token is stored; lookups are cached briefly because every request
// (and every worker poll) carries one.

import { createHash, randomBytes } from 'node:crypto';
import { TschedError } from '../domain/errors.js';
import type { Role, Store, TokenRecord } from '../store/port.js';

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** A new token: a readable prefix by role, then 32 random bytes. */
export function newToken(role: Role): string {
  const prefix = role === 'worker' ? 'tsw' : 'tsk';
  return `${prefix}_${randomBytes(24).toString('base64url')}`;
}

export interface Principal {
  userId: string;
  role: Role;
}

export class Authenticator {
  // The lookup itself is cached, so that the requests arriving while it runs (hundreds a second when an
  // entry expires under load) wait for it instead of each taking a pool connection for its own.
  private cache = new Map<string, { rec: Promise<TokenRecord | null>; until: number }>();
  constructor(
    private store: Store,
    private ttlMs = 10_000,
  ) {}

  async authenticate(header: string | undefined): Promise<Principal> {
    if (!header) throw new TschedError('UNAUTHENTICATED', 'missing Authorization header: expected "Authorization: Bearer <token>"');
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) throw new TschedError('UNAUTHENTICATED', 'malformed Authorization header: expected "Bearer <token>"');
    const h = hashToken(m[1] as string);
    const now = Date.now();
    let hit = this.cache.get(h);
    if (!hit || hit.until < now) {
      const entry = { rec: this.store.findToken(h), until: now + this.ttlMs };
      hit = entry;
      if (this.cache.size > 10_000) this.cache.clear();
      this.cache.set(h, entry);
      // A failed lookup (the database away) is not kept: the next request asks again.
      entry.rec.catch(() => {
        if (this.cache.get(h) === entry) this.cache.delete(h);
      });
    }
    const rec = await hit.rec;
    if (!rec) throw new TschedError('UNAUTHENTICATED', 'the bearer token is not valid');
    return { userId: rec.userId, role: rec.role };
  }
}

/** Admins see every task; users see their own. Returns the owner filter for store queries. */
export function ownerScope(p: Principal, all = true): string | null {
  return p.role === 'admin' && all ? null : p.userId;
}

export function requireRole(p: Principal, roles: Role[], what: string): void {
  if (!roles.includes(p.role)) throw new TschedError('FORBIDDEN', `a ${p.role} token may not ${what}`);
}
