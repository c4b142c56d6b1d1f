import { createHmac, timingSafeEqual } from 'node:crypto';

/** `sha256=<hex>`: HMAC-SHA256 of the exact body bytes with `BROADCAST_HTTP_SECRET`, sent as `X-Signature`. */
export function signBody(body: string | Buffer, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/**
 * For receivers of the `http` broadcast: true when `header` (`X-Signature`) signs `body` (the raw
 * bytes, before any JSON parsing) with `secret`. Compares in constant time.
 */
export function verifySignature(body: string | Buffer, header: string | null | undefined, secret: string): boolean {
  if (!header) return false;
  const expected = Buffer.from(signBody(body, secret));
  const given = Buffer.from(header);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
