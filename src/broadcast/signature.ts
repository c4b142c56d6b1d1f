import { createHmac, timingSafeEqual } from 'node:crypto';
import { Webhook } from 'standardwebhooks';

/**
 * The `http` broadcast signs each POST twice:
 * - Standard Webhooks: `webhook-id` (the event's `eventId`, the same on every retry),
 *   `webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature` (`v1,<base64 HMAC-SHA256
 *   of "<id>.<timestamp>.<body>">`). A secret of the form `whsec_<base64>` is the key's base64; any
 *   other `BROADCAST_HTTP_SECRET` is used as the key's UTF-8 bytes (a Standard Webhooks library in
 *   another language takes that key as `whsec_` followed by the base64 of those bytes).
 * - `X-Signature: sha256=<hex HMAC-SHA256 of the body>` with the secret string as the key, kept for the
 *   receivers written before the Standard Webhooks headers; it goes in the next release.
 */

/** The Standard Webhooks signer/verifier of one secret; throws on an empty secret. */
function webhookOf(secret: string): Webhook {
  if (!secret) throw new Error('a broadcast signing secret must not be empty');
  return secret.startsWith('whsec_') ? new Webhook(secret) : new Webhook(Buffer.from(secret, 'utf8'), { format: 'raw' });
}

/** False for a `whsec_` secret whose key is not valid base64 (what `loadConfig` refuses at start). */
export function isValidSigningSecret(secret: string): boolean {
  try {
    webhookOf(secret);
    return true;
  } catch {
    return false;
  }
}

export type StandardWebhookHeaders = {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
};

/**
 * The Standard Webhooks headers of one delivery attempt of `body` (the exact bytes sent) under the
 * message id `id`, signed at `at`. Throws on an empty secret.
 */
export function standardWebhookHeaders(body: string, id: string, secret: string, at: Date): StandardWebhookHeaders {
  const signature = webhookOf(secret).sign(id, at, body);
  return { 'webhook-id': id, 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': signature };
}

/** `sha256=<hex>`: HMAC-SHA256 of the exact body bytes with `secret`, sent as `X-Signature`. Throws on an empty secret. */
export function signBody(body: string | Buffer, secret: string): string {
  if (!secret) throw new Error('a broadcast signing secret must not be empty');
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/**
 * The `X-Signature` check, for receivers written before the Standard Webhooks headers (new receivers use
 * `createBroadcastVerifier`): true when `header` signs `body` (the raw bytes, before any JSON parsing)
 * with `secret`. False, never an exception, for a missing or empty secret or header, so a receiver whose
 * secret is unset refuses every request. Compares in constant time.
 */
export function verifySignature(body: string | Buffer, header: string | null | undefined, secret: string | null | undefined): boolean {
  if (!header || !secret) return false;
  return constantTimeEqual(header, signBody(body, secret));
}

function constantTimeEqual(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Where a receiver remembers the Standard Webhooks messages it has accepted, to refuse one sent again.
 * `remember` records `key` for `ttlMs` and resolves false when the key is already recorded and has not
 * expired. Shared by the receiver's replicas (a table, Redis `SET key 1 NX PX ttlMs`) it refuses a replay
 * on any of them; the in-memory one covers one process.
 */
export interface ReplayStore {
  remember(key: string, ttlMs: number): boolean | Promise<boolean>;
}

/** A `ReplayStore` in this process's memory; expired keys are dropped as new ones arrive. */
export function createMemoryReplayStore(options: { now?: () => number } = {}): ReplayStore {
  const now = options.now ?? Date.now;
  const expiresAt = new Map<string, number>();
  return {
    remember(key, ttlMs) {
      const at = now();
      for (const [known, expires] of expiresAt) if (expires <= at) expiresAt.delete(known);
      if (expiresAt.has(key)) return false;
      expiresAt.set(key, at + ttlMs);
      return true;
    },
  };
}

export interface BroadcastVerifierOptions {
  /** The secret, or several while rotating: a message signed with any one of them is accepted. */
  secrets: string | readonly string[];
  /** How far `webhook-timestamp` may be from now, either way (default 5 minutes). */
  toleranceMs?: number;
  /** Refuses a message (its `webhook-id` with its `webhook-timestamp`) seen before within the tolerance. */
  replayStore?: ReplayStore;
  /** The clock, epoch milliseconds (default `Date.now`). */
  now?: () => number;
}

export type BroadcastVerification =
  | { ok: true; id: string }
  | { ok: false; reason: 'missing headers' | 'bad timestamp' | 'stale timestamp' | 'bad signature' | 'replayed' };

/** Request headers as fetch's `Headers` or Node's `IncomingHttpHeaders` hold them. */
export type HeadersLike = { get(name: string): string | null } | Record<string, string | string[] | undefined>;

export interface BroadcastVerifier {
  /** Checks one request: `body` is the raw body, before any JSON parsing. */
  verify(body: string | Buffer, headers: HeadersLike): Promise<BroadcastVerification>;
}

export const DEFAULT_SIGNATURE_TOLERANCE_MS = 5 * 60_000;

/**
 * The receiver's side of the `http` broadcast's Standard Webhooks signature. Throws at construction when
 * no secret is given or one is empty, so a receiver cannot run open by a missing variable.
 *
 * A request passes when its timestamp is within the tolerance, one of its signatures matches under one
 * of the secrets (constant-time compare) and, with a `replayStore`, its `webhook-id` has not been
 * accepted with the same `webhook-timestamp` before. The sender's retries of an event keep its
 * `webhook-id` and carry a fresh timestamp and signature, so a retry passes while a captured request sent
 * again does not; a retry of an event already handled is still the receiver's to drop by `eventId`.
 */
export function createBroadcastVerifier(options: BroadcastVerifierOptions): BroadcastVerifier {
  const secrets = typeof options.secrets === 'string' ? [options.secrets] : [...options.secrets];
  if (secrets.length === 0) throw new Error('createBroadcastVerifier needs at least one secret');
  const webhooks = secrets.map(webhookOf);
  const toleranceMs = options.toleranceMs ?? DEFAULT_SIGNATURE_TOLERANCE_MS;
  const now = options.now ?? Date.now;
  return {
    async verify(body, headers) {
      const id = headerOf(headers, 'webhook-id');
      const timestamp = headerOf(headers, 'webhook-timestamp');
      const signatures = headerOf(headers, 'webhook-signature');
      if (!id || !timestamp || !signatures) return { ok: false, reason: 'missing headers' };
      if (!/^\d{1,12}$/.test(timestamp)) return { ok: false, reason: 'bad timestamp' };
      const signedAtMs = Number(timestamp) * 1000;
      const at = now();
      if (Math.abs(at - signedAtMs) > toleranceMs) return { ok: false, reason: 'stale timestamp' };
      const given = signatures.split(' ').filter((signature) => signature.startsWith('v1,'));
      const signedAt = new Date(signedAtMs);
      const matches = webhooks.some((webhook) => {
        const expected = webhook.sign(id, signedAt, body);
        return given.some((signature) => constantTimeEqual(signature, expected));
      });
      if (!matches) return { ok: false, reason: 'bad signature' };
      if (options.replayStore) {
        // Kept until the timestamp leaves the window: after that the tolerance refuses the message anyway.
        const fresh = await options.replayStore.remember(`${id}.${timestamp}`, signedAtMs + toleranceMs - at + 1);
        if (!fresh) return { ok: false, reason: 'replayed' };
      }
      return { ok: true, id };
    },
  };
}

function headerOf(headers: HeadersLike, name: string): string | undefined {
  const value = 'get' in headers && typeof headers.get === 'function' ? headers.get(name) : (headers as Record<string, string | string[] | undefined>)[name];
  if (Array.isArray(value)) return value[0];
  return value ?? undefined;
}
