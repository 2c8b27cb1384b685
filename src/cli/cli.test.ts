// The real built CLI (`node bin/tsched.js`, compiled by `npm run build`) as a user runs it: help, config,
// exit codes and messages for an unreachable server, a refused request, a failing server and bad input.

import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, runCli } from './test-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'tsched-cli-'));
const cfgEnv = (name = 'none.json') => ({ TSCHED_CONFIG: join(dir, name) });

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

beforeAll(() => {
  if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('the CLI is not built: run `npm run build` first (npm test does)');
});

describe('tsched (built CLI)', () => {
  it('--help lists the commands and the exit codes', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    for (const c of [
      'up',
      'server',
      'worker',
      'submit',
      'ls',
      'show',
      'logs',
      'cancel',
      'retry',
      'explain',
      'workers',
      'events',
      'config',
    ]) {
      expect(r.stdout).toMatch(new RegExp(`^  ${c} `, 'm'));
    }
    expect(r.stdout).toContain('3 server unreachable');
    const sub = await runCli(['submit', '--help']);
    expect(sub.code).toBe(0);
    expect(sub.stdout).toContain('--delay-tolerance <duration>');
    expect(sub.stdout).toContain('--no-retry-exit-code <n>');
  });

  it('with no command prints help and exits 2; an unknown option exits 2', async () => {
    const r = await runCli([]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('Usage: tsched');
    const u = await runCli(['ls', '--bogus']);
    expect(u.code).toBe(2);
    expect(u.stderr).toContain("unknown option '--bogus'");
  });

  it('config --json prints only JSON, with where each value came from', async () => {
    writeFileSync(join(dir, 'cfg.json'), JSON.stringify({ url: 'http://127.0.0.1:7999', token: 'tsk_file_token_123' }));
    const r = await runCli(['config', '--json'], cfgEnv('cfg.json'));
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      url: 'http://127.0.0.1:7999',
      urlSource: 'file',
      token: 'tsk_…23',
      tokenSource: 'file',
      configPath: join(dir, 'cfg.json'),
      configFileExists: true,
    });
    const env = await runCli(['config', '--json', '--show-token'], {
      ...cfgEnv('cfg.json'),
      TSCHED_URL: 'http://h:1',
      TSCHED_TOKEN: 'from-env',
    });
    expect(JSON.parse(env.stdout)).toMatchObject({ url: 'http://h:1', urlSource: 'env', token: 'from-env', tokenSource: 'env' });
    const flag = await runCli(['--server', 'http://g:2', 'config', '--json', '--token', 'tf'], cfgEnv('cfg.json'));
    expect(JSON.parse(flag.stdout)).toMatchObject({ url: 'http://g:2', urlSource: 'flag', tokenSource: 'flag' });
    const none = await runCli(['config'], cfgEnv());
    expect(none.stdout).toContain('server: http://127.0.0.1:7420   (from the default)');
    expect(none.stdout).toContain('does not exist; tsched up writes it');
  });

  it('an unreachable server exits 3 and says which URL, and how to start one', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const r = await runCli(['ls'], { ...cfgEnv(), TSCHED_URL: url });
    expect(r.code).toBe(3);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`cannot reach the tsched server at ${url}: nothing is listening there`);
    expect(r.stderr).toContain('TSCHED_URL environment variable');
    expect(r.stderr).toContain('tsched up');
    expect(r.stderr).toContain('--server');
  });

  describe('bad input is refused before anything is sent (exit 2)', () => {
    let server: Server;
    let url = '';
    let requests = 0;
    beforeAll(async () => {
      server = createServer((_req, res) => {
        requests++;
        res.writeHead(500).end();
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(async () => {
      await new Promise((r) => server.close(r));
    });

    it('a bad manifest names the file, the field and the line', async () => {
      const file = join(dir, 'bad.yaml');
      writeFileSync(file, 'name: nightly\ncommand: [echo]\nresources:\n  cpus: -1\nexecutionCap: forever\n');
      const r = await runCli(['submit', '-f', file], { ...cfgEnv(), TSCHED_URL: url });
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain(`${file}: the manifest is invalid (nothing was sent):`);
      expect(r.stderr).toMatch(/\n {2}resources\.cpus: expected a number of cores > 0.* \(line 4\)/);
      expect(r.stderr).toMatch(/\n {2}executionCap: expected a duration.* \(line 5\)/);
      expect(requests).toBe(0);
    });

    it('a bad manifest on stdin is named <stdin>', async () => {
      const r = await runCli(['submit', '-f', '-'], { ...cfgEnv(), TSCHED_URL: url }, '{"command": ["x"], "priority": "asap"}');
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('<stdin>: the manifest is invalid');
      expect(r.stderr).toContain('priority: expected urgent, high, normal, low');
      expect(requests).toBe(0);
    });

    it('a bad flag value names the flag', async () => {
      const r = await runCli(['submit', '--cap', '10 parsecs', '--', 'echo', 'hi'], { ...cfgEnv(), TSCHED_URL: url });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('--cap: expected a duration such as 90s, 15m, 2h, 1d or PT15M, got "10 parsecs"');
      const m = await runCli(['submit', '--memory', 'lots', 'echo'], { ...cfgEnv(), TSCHED_URL: url });
      expect(m.code).toBe(2);
      expect(m.stderr).toContain('--memory: expected a size');
      const z = await runCli(['submit', '--schedule', 'daily', '--at', '02:30', '--timezone', 'Mars/Base', '--', 'true'], {
        ...cfgEnv(),
        TSCHED_URL: url,
      });
      expect(z.code).toBe(2);
      expect(z.stderr).toContain('--timezone (schedule.timezone): expected an IANA time zone');
      expect(requests).toBe(0);
    });

    it('a manifest does not mix with task flags; ids must be numbers', async () => {
      const r = await runCli(['submit', '-f', join(ROOT, 'examples', 'hello.yaml'), '--cpus', '2'], { ...cfgEnv(), TSCHED_URL: url });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('do not combine it with a command or task flags');
      const s = await runCli(['show', 'abc'], { ...cfgEnv(), TSCHED_URL: url });
      expect(s.code).toBe(2);
      expect(s.stderr).toContain('expected a task id (a positive integer), got "abc"');
      expect(requests).toBe(0);
    });

    it('a failing server (5xx) exits 5', async () => {
      const r = await runCli(['workers'], { ...cfgEnv(), TSCHED_URL: url });
      expect(r.code).toBe(5);
      expect(r.stderr).toContain('the server failed (HTTP_500)');
    });
  });
});
