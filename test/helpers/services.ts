// Tests that need PostgreSQL or Docker skip with a loud notice when the service is absent locally, and
// fail when CI=true (CI must provide them).

import { execFileSync } from 'node:child_process';
import pg from 'pg';

export const PG_URL = process.env.TSCHED_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export async function postgresAvailable(): Promise<boolean> {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 2000 });
  try {
    await c.connect();
    await c.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => {});
  }
}

export function dockerAvailable(): boolean {
  try {
    execFileSync('docker', ['info', '--format', '{{.ServerVersion}}'], { stdio: 'pipe', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** Returns true when the suite should run; false (after a loud warning) when it should skip; throws in CI. */
export function requireService(name: string, available: boolean): boolean {
  if (available) return true;
  const msg = `\n\n!!!!!!!! ${name} is not available: its tests are SKIPPED on this machine. In CI (CI=true) this is a failure. !!!!!!!!\n`;
  if (process.env.CI === 'true') throw new Error(`${name} is required in CI but is not available`);
  console.warn(msg);
  return false;
}
