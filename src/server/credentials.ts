// The embedded server's tokens: created on first start, kept (mode 0600) in the data directory so that a
// restart keeps working with the same CLI config and workers.

import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Store } from '../store/port.js';
import { hashToken, newToken } from './auth.js';

export interface Credentials {
  /** The admin user's API token (the CLI uses it). */
  token: string;
  /** A token for workers joining this server. */
  workerToken: string;
  /** HMAC key for webhook signatures. */
  webhookSecret: string;
}

export async function ensureCredentials(store: Store, dataDir: string): Promise<Credentials> {
  const file = join(dataDir, 'credentials.json');
  let creds: Credentials;
  if (existsSync(file)) {
    creds = JSON.parse(readFileSync(file, 'utf8')) as Credentials;
    if (!creds.webhookSecret) {
      creds.webhookSecret = randomBytes(32).toString('hex');
      writeFileSync(file, `${JSON.stringify(creds, null, 2)}\n`, { mode: 0o600 });
    }
  } else {
    creds = { token: newToken('admin'), workerToken: newToken('worker'), webhookSecret: randomBytes(32).toString('hex') };
    writeFileSync(file, `${JSON.stringify(creds, null, 2)}\n`, { mode: 0o600 });
  }
  // Idempotent: a restart re-asserts the same rows.
  await store.putToken({ tokenHash: hashToken(creds.token), userId: 'admin', role: 'admin', name: 'embedded admin' });
  await store.putToken({ tokenHash: hashToken(creds.workerToken), userId: 'worker', role: 'worker', name: 'embedded workers' });
  return creds;
}
