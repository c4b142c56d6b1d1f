import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signBody, verifySignature } from '../../src/broadcast/signature.js';

describe('http broadcast signature', () => {
  const body = '{"type":"model_status_changed","eventId":"e1"}';

  it('is sha256=<hex HMAC-SHA256 of the exact body>', () => {
    expect(signBody(body, 's3cret')).toBe(`sha256=${createHmac('sha256', 's3cret').update(body).digest('hex')}`);
  });

  it('verifies the exact body with the right secret only', () => {
    const header = signBody(body, 's3cret');
    expect(verifySignature(body, header, 's3cret')).toBe(true);
    expect(verifySignature(Buffer.from(body), header, 's3cret')).toBe(true);
    expect(verifySignature(`${body} `, header, 's3cret')).toBe(false);
    expect(verifySignature(body, header, 'other')).toBe(false);
    expect(verifySignature(body, header.slice(0, -1), 's3cret')).toBe(false);
    expect(verifySignature(body, undefined, 's3cret')).toBe(false);
  });
});
