// What the figures were measured on: cores, load, and the versions of everything involved.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { REDIS, withPg } from './env.mjs';

function pkgVersion(name) {
  try {
    return JSON.parse(readFileSync(new URL(`../../node_modules/${name}/package.json`, import.meta.url), 'utf8')).version;
  } catch {
    return 'not installed';
  }
}

/** Redis's version, and whether it keeps anything on disk (BullMQ's jobs are as durable as that). */
async function redisInfo() {
  try {
    const { Redis } = await import('ioredis');
    const r = new Redis({ ...REDIS, lazyConnect: true, maxRetriesPerRequest: 1 });
    await r.connect();
    try {
      const info = await r.info('server');
      // CONFIG can be renamed away on a managed Redis: then the persistence is unknown, not guessed.
      const config = async (key) => {
        try {
          return (await r.config('GET', key))[1];
        } catch {
          return '?';
        }
      };
      return {
        version: /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown',
        appendonly: await config('appendonly'),
        appendfsync: await config('appendfsync'),
        save: await config('save'),
      };
    } finally {
      r.disconnect();
    }
  } catch (err) {
    return { version: `unreachable (${err.message})`, appendonly: '?', appendfsync: '?', save: '?' };
  }
}

async function pgInfo() {
  try {
    return await withPg(async (c) => ({
      version: (await c.query('SHOW server_version')).rows[0].server_version,
      synchronousCommit: (await c.query('SHOW synchronous_commit')).rows[0].synchronous_commit,
      fsync: (await c.query('SHOW fsync')).rows[0].fsync,
    }));
  } catch (err) {
    return { version: `unreachable (${err.message})`, synchronousCommit: '?', fsync: '?' };
  }
}

function gitCommit() {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

export async function machineInfo() {
  const cpus = os.cpus();
  const pg = await pgInfo();
  const redis = await redisInfo();
  return {
    cores: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    redis: redis.version,
    redisAppendonly: redis.appendonly,
    redisAppendfsync: redis.appendfsync,
    redisSave: redis.save,
    postgres: pg.version,
    pgSynchronousCommit: pg.synchronousCommit,
    pgFsync: pg.fsync,
    packages: {
      tsched: `${pkgVersion('../')}`,
      bullmq: pkgVersion('bullmq'),
      ioredis: pkgVersion('ioredis'),
      'pg-boss': pkgVersion('pg-boss'),
      'graphile-worker': pkgVersion('graphile-worker'),
      pg: pkgVersion('pg'),
      'better-sqlite3': pkgVersion('better-sqlite3'),
    },
    commit: gitCommit(),
    loadAvg: os.loadavg(),
  };
}
