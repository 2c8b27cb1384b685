import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configPath, DEFAULT_URL, maskToken, readConfig, resolveConfig, writeConfig } from './config.js';
import { UsageError } from './errors.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'tsched-cfg-'));

describe('configPath', () => {
  it('prefers TSCHED_CONFIG, then XDG_CONFIG_HOME, then ~/.config', () => {
    expect(configPath({ TSCHED_CONFIG: '/a/c.json', XDG_CONFIG_HOME: '/x', HOME: '/h' })).toBe('/a/c.json');
    expect(configPath({ XDG_CONFIG_HOME: '/x', HOME: '/h' })).toBe('/x/tsched/config.json');
    expect(configPath({ HOME: '/h' })).toBe('/h/.config/tsched/config.json');
  });
});

describe('writeConfig / readConfig', () => {
  it('writes {url, token} with mode 0600 in a new directory, and reads it back', () => {
    const path = join(tmp(), 'nested', 'config.json');
    writeConfig({ url: 'http://127.0.0.1:9', token: 'tok' }, path);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual({ url: 'http://127.0.0.1:9', token: 'tok' });
    expect(readConfig(path)).toEqual({ url: 'http://127.0.0.1:9', token: 'tok' });
  });

  it('treats a missing file as empty and a broken one as a usage error naming the file', () => {
    const dir = tmp();
    expect(readConfig(join(dir, 'none.json'))).toEqual({});
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{nope');
    expect(() => readConfig(bad)).toThrow(UsageError);
    expect(() => readConfig(bad)).toThrow(bad);
  });
});

describe('resolveConfig', () => {
  const withFile = () => {
    const path = join(tmp(), 'config.json');
    writeConfig({ url: 'http://file:1', token: 'file-token' }, path);
    return path;
  };

  it('takes flags first', () => {
    const env = { TSCHED_CONFIG: withFile(), TSCHED_URL: 'http://env:2', TSCHED_TOKEN: 'env-token' };
    expect(resolveConfig({ server: 'http://flag:3/', token: 'flag-token' }, env)).toMatchObject({
      url: 'http://flag:3',
      urlSource: 'flag',
      token: 'flag-token',
      tokenSource: 'flag',
    });
  });

  it('then the environment', () => {
    const env = { TSCHED_CONFIG: withFile(), TSCHED_URL: 'http://env:2', TSCHED_TOKEN: 'env-token' };
    expect(resolveConfig({}, env)).toMatchObject({ url: 'http://env:2', urlSource: 'env', token: 'env-token', tokenSource: 'env' });
  });

  it('then the config file, each value on its own', () => {
    const path = withFile();
    expect(resolveConfig({}, { TSCHED_CONFIG: path })).toMatchObject({
      url: 'http://file:1',
      urlSource: 'file',
      token: 'file-token',
      tokenSource: 'file',
      configPath: path,
    });
    expect(resolveConfig({ server: 'http://flag:3' }, { TSCHED_CONFIG: path })).toMatchObject({ urlSource: 'flag', tokenSource: 'file' });
  });

  it('then the default URL and no token', () => {
    const env = { TSCHED_CONFIG: join(tmp(), 'missing.json') };
    expect(resolveConfig({}, env)).toMatchObject({ url: DEFAULT_URL, urlSource: 'default', token: undefined, tokenSource: 'none' });
  });

  it('refuses a URL that is not http(s), naming where it came from', () => {
    const env = { TSCHED_CONFIG: join(tmp(), 'missing.json') };
    expect(() => resolveConfig({ server: 'localhost:7420' }, env)).toThrow(/--server/);
    expect(() => resolveConfig({}, { ...env, TSCHED_URL: 'not a url' })).toThrow(/TSCHED_URL/);
  });

  it('ignores a broken file when flags give both values', () => {
    const path = join(tmp(), 'config.json');
    writeFileSync(path, 'garbage');
    expect(resolveConfig({ server: 'http://a:1', token: 't' }, { TSCHED_CONFIG: path }).url).toBe('http://a:1');
    expect(() => resolveConfig({}, { TSCHED_CONFIG: path })).toThrow(UsageError);
  });
});

describe('maskToken', () => {
  it('hides all but a recognisable prefix', () => {
    expect(maskToken(undefined)).toBeNull();
    expect(maskToken('short')).toBe('****');
    expect(maskToken('tsk_abcdefghijklmnop')).toBe('tsk_…op');
  });
});
