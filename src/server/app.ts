// The Fastify app: auth, validation with stable error codes, rate limits, OpenAPI, and the routes.

import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import { Ajv } from 'ajv';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { Control } from './control.js';
import { sendError } from './errors.js';
import { scheduleRoutes } from './routes/schedules.js';
import { taskRoutes } from './routes/tasks.js';
import { tokenRoutes } from './routes/tokens.js';
import { workerRoutes } from './routes/workers.js';

export async function buildApp(c: Control, opts: { logger?: boolean } = {}): Promise<FastifyInstance> {
  const app: FastifyInstance = Fastify({
    loggerInstance: (opts.logger === false ? undefined : c.log) as FastifyBaseLogger | undefined,
    bodyLimit: c.config.bodyLimit,
    // Per-request access logs would dominate at thousands of worker calls a second.
    logController: new LogController({ disableRequestLogging: true }),
    keepAliveTimeout: 65_000,
    // Long-polls and log streams must not hold a shutdown hostage.
    forceCloseConnections: true,
  });
  // Unknown fields are an error, never silently dropped; bodies are not coerced (a string is not a number);
  // querystrings arrive as strings, so they (and only they) are coerced to the schema's types.
  app.setValidatorCompiler(makeValidatorCompiler());

  app.setErrorHandler((err, req, reply) => sendError(reply, req, err));
  app.setNotFoundHandler((req, reply) =>
    reply.status(404).send({ error: { code: 'NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}; see /openapi.json` } }),
  );

  await app.register(swagger, {
    openapi: {
      info: { title: 'tsched', version: c.version, description: 'A distributed task scheduler and runner' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(rateLimit, {
    global: false,
    max: c.config.rateLimitPerMinute,
    timeWindow: 60_000,
    keyGenerator: (req) => (req.headers.authorization as string | undefined) ?? req.ip,
    errorResponseBuilder: (_req, ctx) => ({
      statusCode: 429,
      error: {
        code: 'RATE_LIMITED',
        message: `too many requests: at most ${ctx.max} per minute per token; retry in ${Math.ceil(ctx.ttl / 1000)}s`,
      },
    }),
  });

  app.decorateRequest('principal', null as never);
  app.addHook('onRequest', async (req) => {
    const path = req.url.split('?')[0] ?? '';
    if (path === '/healthz' || path === '/openapi.json' || path === '/metrics' || path === '/' || path.startsWith('/ui')) return;
    req.principal = await c.auth.authenticate(req.headers.authorization);
  });

  app.get('/healthz', { schema: { summary: 'Liveness and role of this replica', tags: ['ops'] } }, async () => ({
    ok: true,
    version: c.version,
    store: c.store.kind,
    leader: c.isLeader(),
    ...(c.describeCluster?.() ?? {}),
  }));
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    reply.header('content-type', c.metrics.registry.contentType);
    return c.metrics.registry.metrics();
  });

  await app.register(async (scoped) => {
    // Rate limits apply to the user-facing API; worker protocol calls are bounded by their own long-poll.
    scoped.addHook('onRoute', (route) => {
      route.config = { ...(route.config as object), rateLimit: { max: c.config.rateLimitPerMinute, timeWindow: 60_000 } } as never;
    });
    taskRoutes(scoped, c);
    scheduleRoutes(scoped, c);
    tokenRoutes(scoped, c);
  });
  workerRoutes(app, c);
  return app;
}

/** One Ajv for bodies and params (strict), one for querystrings (coercing "5" → 5, "true" → true). */
function makeValidatorCompiler() {
  const base = { removeAdditional: false, allErrors: true, useDefaults: false, strict: false } as const;
  const strictAjv = new Ajv({ ...base, coerceTypes: false });
  const queryAjv = new Ajv({ ...base, coerceTypes: true });
  // biome-ignore lint/suspicious/noExplicitAny: fastify's compiler signature
  return ({ schema, httpPart }: { schema: any; httpPart?: string }) => {
    if (schema?.['x-tsched-dispatch'] === 'tasks') {
      // One task or { tasks: [...] }: validate against the form the body is in, so errors name real fields
      // instead of listing every branch of a union.
      const single = strictAjv.compile(schema.anyOf[0]);
      const batch = strictAjv.compile(schema.anyOf[1]);
      const fn = (data: unknown) => {
        const v = data && typeof data === 'object' && !Array.isArray(data) && 'tasks' in data ? batch : single;
        const ok = v(data) as boolean;
        fn.errors = v.errors;
        return ok;
      };
      fn.errors = null as unknown;
      return fn as never;
    }
    const ajv = httpPart === 'querystring' || httpPart === 'params' || httpPart === 'headers' ? queryAjv : strictAjv;
    return ajv.compile(schema);
  };
}
