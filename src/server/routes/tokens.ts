// Tokens: an admin issues API tokens for users (each user sees only their own tasks) and for workers.

import { Type as T } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { hashToken, newToken, requireRole } from '../auth.js';
import type { Control } from '../control.js';

const CreateTokenSchema = T.Object(
  {
    user: T.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9][A-Za-z0-9._@-]*$', description: 'the user the token acts as' }),
    role: T.Optional(T.Union([T.Literal('user'), T.Literal('worker'), T.Literal('admin')])),
    name: T.Optional(T.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);

export function tokenRoutes(app: FastifyInstance, c: Control): void {
  app.post(
    '/v1/tokens',
    { schema: { summary: 'Issue a token (admin only); it is shown once', tags: ['auth'], body: CreateTokenSchema } },
    async (req, reply) => {
      requireRole(req.principal, ['admin'], 'issue tokens');
      const b = req.body as { user: string; role?: 'user' | 'worker' | 'admin'; name?: string };
      const role = b.role ?? 'user';
      const token = newToken(role);
      await c.store.putToken({ tokenHash: hashToken(token), userId: b.user, role, name: b.name ?? `${role} token for ${b.user}` });
      reply.status(201);
      return { token, user: b.user, role };
    },
  );
}
