import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type pg from 'pg';
import { callbackBodySchema } from '../astria/tune.js';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import { applyObservedTune } from '../status/apply-tune.js';
import type { StatusService } from '../status/service.js';
import { sendJson, type RouteHandler } from './server.js';

export const MAX_WEBHOOK_BODY_BYTES = 1024 * 1024;

export interface WebhookOptions {
  secret: string;
  pool: pg.Pool;
  service: StatusService;
  log: Logger;
  clock: Clock;
  trainingTimeoutMs: number;
  maxBodyBytes?: number;
}

class BodyTooLarge extends Error {}

/** Compares secrets in constant time: digests first, so unequal lengths leak nothing either. */
export function secretMatches(given: string | null, expected: string): boolean {
  if (given === null) return false;
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  if (Number(req.headers['content-length'] ?? 0) > limit) throw new BodyTooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new BodyTooLarge();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * Astria's tune callback. Astria signs nothing, so the secret travels in the URL we gave it. The body
 * is only a hint: it goes through the same rules and status service as the poller's observations.
 * Every rejection (401, 413, 400) and an unknown tune (202) leave the database untouched.
 */
export function createWebhookHandler(options: WebhookOptions): RouteHandler {
  const limit = options.maxBodyBytes ?? MAX_WEBHOOK_BODY_BYTES;
  return async (req, res, url) => {
    // The request body is left unread on rejection: close the connection rather than drain it.
    const reject = (status: number, error: string) => {
      res.setHeader('connection', 'close');
      sendJson(res, status, { error });
    };
    if (!secretMatches(url.searchParams.get('secret'), options.secret)) return reject(401, 'invalid or missing secret');

    let raw: Buffer;
    try {
      raw = await readBody(req, limit);
    } catch (error) {
      if (error instanceof BodyTooLarge) return reject(413, `body larger than ${limit} bytes`);
      throw error;
    }
    let json: unknown;
    try {
      json = JSON.parse(raw.toString('utf8'));
    } catch {
      return reject(400, 'body is not JSON');
    }
    const parsed = callbackBodySchema.safeParse(json);
    if (!parsed.success) {
      options.log.warn({ issues: parsed.error.issues.slice(0, 3) }, 'rejected malformed Astria callback');
      return reject(400, 'body is not an Astria tune');
    }

    const result = await applyObservedTune({
      pool: options.pool,
      service: options.service,
      tune: parsed.data,
      source: 'webhook',
      now: new Date(options.clock.now()),
      trainingTimeoutMs: options.trainingTimeoutMs,
    });
    if (result.matched === 0) {
      options.log.info({ tuneId: parsed.data.id }, 'callback for a tune no model trains; ignored');
      return sendJson(res, 202, { status: 'ignored', reason: 'unknown tune' });
    }
    options.log.info({ tuneId: parsed.data.id, matched: result.matched, applied: result.applied.length }, 'Astria callback applied');
    sendJson(res, 200, { status: 'ok', matched: result.matched, applied: result.applied.length });
  };
}
