/**
 * The simulated Astria's `fireCallback`, which the demo, the e2e tests and the benchmarks use to play
 * Astria's tune callback: code on the global `fetch`, so nock (which intercepts it) stands in for the
 * app, and asserts the request Astria would send.
 */
import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';

const APP = 'http://app.test';
let astria: SimulatedAstria;

beforeAll(async () => {
  astria = await startSimulatedAstria({ apiKey: 'sd_nock_key' });
  // Only the app is faked; the simulated Astria itself stays on real loopback HTTP.
  nock.disableNetConnect();
  nock.enableNetConnect('127.0.0.1');
});

afterEach(() => nock.cleanAll());

afterAll(async () => {
  nock.enableNetConnect();
  await astria.close();
});

describe('fireCallback', () => {
  it('POSTs the trained tune, wrapped as Astria wraps it, to the callback URL with its query', async () => {
    const tune = astria.addTune({ startedTrainingAt: new Date('2026-01-01T00:00:00Z') });
    astria.train(tune.id, new Date('2026-01-01T00:20:00Z'));
    let received: unknown;
    const app = nock(APP)
      .post('/api/webhooks/astria', (body: unknown) => ((received = body), true))
      .query({ secret: 's3cret' })
      .matchHeader('content-type', 'application/json')
      .reply(200, { status: 'ok' });

    expect(await astria.fireCallback(tune.id, `${APP}/api/webhooks/astria?secret=s3cret`)).toBe(200);
    expect(app.isDone()).toBe(true);
    expect(received).toMatchObject({ tune: { id: tune.id, trained_at: '2026-01-01T00:20:00.000Z' } });
  });

  it('sends the bare tune when asked, and reports the app’s answer as it was', async () => {
    const tune = astria.addTune();
    astria.fail(tune.id, 'no faces');
    let received: unknown;
    nock(APP)
      .post('/hook', (body: unknown) => ((received = body), true))
      .reply(503, 'down');

    expect(await astria.fireCallback(tune.id, `${APP}/hook`, { bare: true })).toBe(503);
    expect(received).toMatchObject({ id: tune.id, status: 'failed', error_message: 'no faces' });
  });
});
