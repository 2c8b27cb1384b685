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
  private cache = new Map<string, { rec: TokenRecord | null; until: number }>();
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
      const rec = await this.store.findToken(h);
      hit = { rec, until: now + this.ttlMs };
      if (this.cache.size > 10_000) this.cache.clear();
      this.cache.set(h, hit);
    }
    if (!hit.rec) throw new TschedError('UNAUTHENTICATED', 'the bearer token is not valid');
    return { userId: hit.rec.userId, role: hit.rec.role };
  }
}

/** Admins see every task; users see their own. Returns the owner filter for store queries. */
export function ownerScope(p: Principal, all = true): string | null {
  return p.role === 'admin' && all ? null : p.userId;
}

export function requireRole(p: Principal, roles: Role[], what: string): void {
  if (!roles.includes(p.role)) throw new TschedError('FORBIDDEN', `a ${p.role} token may not ${what}`);
}
