import { createHmac } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { createHttpTransport } from '../../src/broadcast/http.js';
import {
  createBroadcastVerifier,
  createMemoryReplayStore,
  signBody,
  standardWebhookHeaders,
  verifySignature,
} from '../../src/broadcast/signature.js';
import type { ModelEvent } from '../../src/status/event.js';

const body = '{"type":"model_status_changed","eventId":"e1"}';
const WHSEC = `whsec_${Buffer.from('a key of thirty-two bytes, random').toString('base64')}`;
const SIGNED_AT = new Date('2026-12-06T12:00:00Z');
const at = (offsetMs: number) => () => SIGNED_AT.getTime() + offsetMs;

describe('X-Signature (kept for existing receivers)', () => {
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

  it('refuses everything when the secret is empty or missing, even a body "signed" with the empty secret', () => {
    const emptyKeyHmac = `sha256=${createHmac('sha256', '').update(body).digest('hex')}`;
    expect(verifySignature(body, emptyKeyHmac, '')).toBe(false);
    expect(verifySignature(body, emptyKeyHmac, undefined)).toBe(false);
    expect(verifySignature(body, emptyKeyHmac, null)).toBe(false);
    expect(() => signBody(body, '')).toThrow(/must not be empty/);
  });
});

describe('Standard Webhooks signature', () => {
  it('is what the standardwebhooks package verifies, for a whsec_ secret and for a plain one (its UTF-8 bytes as the key)', () => {
    const withWhsec = standardWebhookHeaders(body, 'evt-1', WHSEC, new Date());
    expect(withWhsec['webhook-id']).toBe('evt-1');
    expect(new Webhook(WHSEC).verify(body, { ...withWhsec })).toEqual(JSON.parse(body));

    const plain = 'plain sécret';
    const withPlain = standardWebhookHeaders(body, 'evt-1', plain, new Date());
    const asWhsec = `whsec_${Buffer.from(plain, 'utf8').toString('base64')}`;
    expect(new Webhook(asWhsec).verify(body, { ...withPlain })).toEqual(JSON.parse(body));
    expect(() => new Webhook(WHSEC).verify(body, { ...withPlain })).toThrow();
  });

  it('accepts the exact body signed with the secret, in Headers or Node header form', async () => {
    const verifier = createBroadcastVerifier({ secrets: WHSEC, now: at(1_000) });
    const headers = standardWebhookHeaders(body, 'evt-1', WHSEC, SIGNED_AT);
    expect(await verifier.verify(body, headers)).toEqual({ ok: true, id: 'evt-1' });
    expect(await verifier.verify(Buffer.from(body), new Headers({ ...headers }))).toEqual({ ok: true, id: 'evt-1' });
    expect(await verifier.verify(`${body} `, headers)).toEqual({ ok: false, reason: 'bad signature' });
    expect(await verifier.verify(body, { ...headers, 'webhook-id': 'evt-2' })).toEqual({ ok: false, reason: 'bad signature' });
    expect(await verifier.verify(body, { ...headers, 'webhook-signature': undefined })).toEqual({ ok: false, reason: 'missing headers' });
    expect(await verifier.verify(body, { ...headers, 'webhook-timestamp': 'soon' })).toEqual({ ok: false, reason: 'bad timestamp' });
  });

  it('refuses a signature by another secret, and accepts either of two while the secret rotates', async () => {
    const oldSecret = 'the old secret';
    const headersOld = standardWebhookHeaders(body, 'evt-1', oldSecret, SIGNED_AT);
    const headersNew = standardWebhookHeaders(body, 'evt-1', WHSEC, SIGNED_AT);
    expect(await createBroadcastVerifier({ secrets: WHSEC, now: at(0) }).verify(body, headersOld)).toEqual({ ok: false, reason: 'bad signature' });
    const rotating = createBroadcastVerifier({ secrets: [WHSEC, oldSecret], now: at(0) });
    expect(await rotating.verify(body, headersOld)).toEqual({ ok: true, id: 'evt-1' });
    expect(await rotating.verify(body, headersNew)).toEqual({ ok: true, id: 'evt-1' });
    // A sender signing with both keys at once (space-separated signatures) passes a receiver knowing either.
    const both = { ...headersNew, 'webhook-signature': `${headersOld['webhook-signature']} ${headersNew['webhook-signature']}` };
    expect(await createBroadcastVerifier({ secrets: oldSecret, now: at(0) }).verify(body, both)).toEqual({ ok: true, id: 'evt-1' });
  });

  it('refuses a timestamp outside the tolerance (default 5 minutes, either way)', async () => {
    const headers = standardWebhookHeaders(body, 'evt-1', WHSEC, SIGNED_AT);
    expect(await createBroadcastVerifier({ secrets: WHSEC, now: at(4 * 60_000) }).verify(body, headers)).toMatchObject({ ok: true });
    expect(await createBroadcastVerifier({ secrets: WHSEC, now: at(-4 * 60_000) }).verify(body, headers)).toMatchObject({ ok: true });
    expect(await createBroadcastVerifier({ secrets: WHSEC, now: at(6 * 60_000) }).verify(body, headers)).toEqual({ ok: false, reason: 'stale timestamp' });
    expect(await createBroadcastVerifier({ secrets: WHSEC, now: at(-6 * 60_000) }).verify(body, headers)).toEqual({ ok: false, reason: 'stale timestamp' });
    const wide = createBroadcastVerifier({ secrets: WHSEC, toleranceMs: 10 * 60_000, now: at(6 * 60_000) });
    expect(await wide.verify(body, headers)).toMatchObject({ ok: true });
  });

  it('with a replay store, refuses the same message sent again but passes a retry of the event (same id, fresh timestamp)', async () => {
    let now = SIGNED_AT.getTime();
    const verifier = createBroadcastVerifier({ secrets: WHSEC, replayStore: createMemoryReplayStore(), now: () => now });
    const first = standardWebhookHeaders(body, 'evt-1', WHSEC, SIGNED_AT);
    expect(await verifier.verify(body, first)).toEqual({ ok: true, id: 'evt-1' });
    expect(await verifier.verify(body, first)).toEqual({ ok: false, reason: 'replayed' });
    now += 30_000;
    const retry = standardWebhookHeaders(body, 'evt-1', WHSEC, new Date(now));
    expect(await verifier.verify(body, retry)).toEqual({ ok: true, id: 'evt-1' });
    expect(await verifier.verify(body, first)).toEqual({ ok: false, reason: 'replayed' });
    // Without a store the tolerance alone bounds a replay.
    const open = createBroadcastVerifier({ secrets: WHSEC, now: () => now });
    expect(await open.verify(body, first)).toMatchObject({ ok: true });
    expect(await open.verify(body, first)).toMatchObject({ ok: true });
  });

  it('the in-memory replay store forgets a key once its time is up', () => {
    let now = 0;
    const store = createMemoryReplayStore({ now: () => now });
    expect(store.remember('a', 1_000)).toBe(true);
    expect(store.remember('a', 1_000)).toBe(false);
    now = 999;
    expect(store.remember('a', 1_000)).toBe(false);
    now = 1_000;
    expect(store.remember('a', 1_000)).toBe(true);
  });

  it('a failed check records nothing in the replay store', async () => {
    const verifier = createBroadcastVerifier({ secrets: WHSEC, replayStore: createMemoryReplayStore(), now: at(0) });
    const headers = standardWebhookHeaders(body, 'evt-1', WHSEC, SIGNED_AT);
    expect(await verifier.verify(`${body} `, headers)).toEqual({ ok: false, reason: 'bad signature' });
    expect(await verifier.verify(body, headers)).toEqual({ ok: true, id: 'evt-1' });
  });

  it('cannot be built without a secret, or with an empty one', () => {
    expect(() => createBroadcastVerifier({ secrets: '' })).toThrow(/must not be empty/);
    expect(() => createBroadcastVerifier({ secrets: [] })).toThrow(/at least one secret/);
    expect(() => createBroadcastVerifier({ secrets: [WHSEC, ''] })).toThrow(/must not be empty/);
    expect(() => standardWebhookHeaders(body, 'evt-1', '', SIGNED_AT)).toThrow(/must not be empty/);
  });
});

describe('http transport headers', () => {
  it('sends webhook-id (the eventId), webhook-timestamp, webhook-signature and X-Signature, all verifiable', async () => {
    let received: { headers: IncomingHttpHeaders; body: string } | undefined;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        received = { headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const transport = createHttpTransport({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, secret: WHSEC });
    const event = {
      type: 'model_status_changed',
      eventId: '5b0f9d2e-8f0e-4a57-9a39-2f4f6f0f4b11',
      modelId: 'm-1',
      userId: 'u-1',
      from: 'TRAINING',
      to: 'READY',
      source: 'reconciler',
      occurredAt: '2026-12-06T12:00:00.000Z',
    } as unknown as ModelEvent;
    try {
      await transport.deliver(event);
    } finally {
      await transport.close();
      await new Promise((resolve) => server.close(resolve));
    }
    expect(received!.headers['webhook-id']).toBe(event.eventId);
    expect(await createBroadcastVerifier({ secrets: WHSEC }).verify(received!.body, received!.headers)).toEqual({ ok: true, id: event.eventId });
    expect(verifySignature(received!.body, received!.headers['x-signature'] as string, WHSEC)).toBe(true);
  });
});
