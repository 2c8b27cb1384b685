// Where the CLI finds its server and token. Resolution order, first hit wins, per value:
//   flag (--server / --token) → env (TSCHED_URL / TSCHED_TOKEN) → the config file `tsched up` writes → default.
// The file holds a bearer token, so it is written with mode 0600 in a 0700 directory.

import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { UsageError } from './errors.js';

export const DEFAULT_URL = 'http://127.0.0.1:7420';

export interface ConfigFile {
  url?: string;
  token?: string;
}

export type Source = 'flag' | 'env' | 'file' | 'default' | 'none';

export interface ResolvedConfig {
  url: string;
  urlSource: Source;
  token: string | undefined;
  tokenSource: Source;
  /** The config file consulted (it may not exist). */
  configPath: string;
}

type Env = Record<string, string | undefined>;

/** $TSCHED_CONFIG, else $XDG_CONFIG_HOME/tsched/config.json, else ~/.config/tsched/config.json. */
export function configPath(env: Env = process.env): string {
  if (env.TSCHED_CONFIG) return env.TSCHED_CONFIG;
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config');
  return join(base, 'tsched', 'config.json');
}

/** The config file's contents, or {} when there is none. A file that is not valid JSON is a usage error. */
export function readConfig(path: string = configPath()): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new UsageError(`cannot read the config file ${path}: ${(err as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`the config file ${path} is not valid JSON (${(err as Error).message}); fix it or delete it`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new UsageError(`the config file ${path} should hold an object like {"url": "...", "token": "..."}`);
  }
  const o = data as Record<string, unknown>;
  const out: ConfigFile = {};
  if (typeof o.url === 'string' && o.url) out.url = o.url;
  if (typeof o.token === 'string' && o.token) out.token = o.token;
  return out;
}

/** Writes the file atomically with mode 0600 (its directory 0700). */
export function writeConfig(config: ConfigFile, path: string = configPath()): string {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ url: config.url, token: config.token }, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600); // the umask may have widened it
  renameSync(tmp, path);
  return path;
}

export function resolveConfig(flags: { server?: string | undefined; token?: string | undefined }, env: Env = process.env): ResolvedConfig {
  const path = configPath(env);
  // Read the file lazily: when flags or env give both values, a broken file must not matter.
  let file: ConfigFile | null = null;
  const fromFile = (): ConfigFile => {
    file ??= readConfig(path);
    return file;
  };
  let url: string;
  let urlSource: Source;
  if (flags.server) [url, urlSource] = [flags.server, 'flag'];
  else if (env.TSCHED_URL) [url, urlSource] = [env.TSCHED_URL, 'env'];
  else if (fromFile().url) [url, urlSource] = [fromFile().url as string, 'file'];
  else [url, urlSource] = [DEFAULT_URL, 'default'];

  let token: string | undefined;
  let tokenSource: Source;
  if (flags.token) [token, tokenSource] = [flags.token, 'flag'];
  else if (env.TSCHED_TOKEN) [token, tokenSource] = [env.TSCHED_TOKEN, 'env'];
  else if (fromFile().token) [token, tokenSource] = [fromFile().token, 'file'];
  else [token, tokenSource] = [undefined, 'none'];

  return { url: checkUrl(url, urlSource), urlSource, token, tokenSource, configPath: path };
}

function checkUrl(url: string, source: Source): string {
  const where = { flag: '--server', env: 'TSCHED_URL', file: 'the config file', default: 'the default', none: '' }[source];
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`${where}: expected a server URL such as http://127.0.0.1:7420, got "${url}"`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`${where}: expected an http or https URL, got "${url}"`);
  return url.replace(/\/+$/, '');
}

/** "flag --token", "env TSCHED_TOKEN", "the config file /x/config.json": for messages. */
export function describeSource(source: Source, what: 'url' | 'token', path: string): string {
  switch (source) {
    case 'flag':
      return what === 'url' ? 'the --server flag' : 'the --token flag';
    case 'env':
      return what === 'url' ? 'the TSCHED_URL environment variable' : 'the TSCHED_TOKEN environment variable';
    case 'file':
      return `the config file ${path}`;
    case 'default':
      return 'the default';
    default:
      return 'nowhere (none was given)';
  }
}

export function maskToken(token: string | undefined): string | null {
  if (!token) return null;
  if (token.length <= 8) return '****';
  return `${token.slice(0, 4)}…${token.slice(-2)}`;
}
