/**
 * `ASTRIA_WORKSPACE_ID` on the wire: the client against the simulated Astria (real loopback HTTP),
 * which keeps its tunes in a workspace and shows a request without that workspace only the key's
 * personal scope, as Astria does.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createAstriaClient, type AstriaClient } from '../../src/astria/client.js';
import { systemClock } from '../../src/clock.js';
import { startSimulatedAstria, type RequestEvent, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics.js';

const API_KEY = 'sd_workspace_client_key';
const WORKSPACE = '4242';

let astria: SimulatedAstria;
let requests: RequestEvent[] = [];
const clients: AstriaClient[] = [];

beforeAll(async () => {
  astria = await startSimulatedAstria({ apiKey: API_KEY, workspaceId: WORKSPACE });
  astria.onRequest((event) => requests.push(event));
});
afterEach(async () => {
  requests = [];
  await Promise.all(clients.splice(0).map((client) => client.close()));
});
afterAll(() => astria.close());

function client(workspaceId?: string): AstriaClient {
  const created = createAstriaClient({
    apiUrl: astria.url,
    apiKey: API_KEY,
    workspaceId,
    maxRps: 1_000,
    concurrency: 2,
    timeoutMs: 5_000,
    log: createLogger('silent'),
    metrics: createMetrics(),
    clock: systemClock,
    retry: { attempts: 1 },
  });
  clients.push(created);
  return created;
}

describe('X-Workspace-Id', () => {
  it.each([WORKSPACE, 'all'])('with ASTRIA_WORKSPACE_ID=%s the tunes are seen by GET and list, and every request carries it', async (workspaceId) => {
    const tune = astria.addTune({ trainedAt: new Date('2026-01-01T00:10:00Z'), createdAt: new Date('2026-01-01T00:00:00Z') });
    const withWorkspace = client(workspaceId);

    const got = await withWorkspace.getTune(String(tune.id));
    expect(got).toMatchObject({ kind: 'tune', tune: { id: tune.id, trained_at: new Date('2026-01-01T00:10:00Z') } });
    const page = await withWorkspace.listTunes({ limit: 120 });
    expect(page.kind === 'page' && page.tunes.map((listed) => listed.id)).toContain(tune.id);

    expect(requests.length).toBe(2);
    expect(requests.map((request) => request.workspaceId)).toEqual([workspaceId, workspaceId]);
  });

  it('without it, a workspace tune is not found and the list shows none (the personal scope)', async () => {
    const tune = astria.addTune({ trainedAt: new Date('2026-01-01T00:10:00Z') });
    const personal = client();

    expect(await personal.getTune(String(tune.id))).toEqual({ kind: 'gone', tuneId: String(tune.id) });
    expect(await personal.listTunes({ limit: 120 })).toMatchObject({ kind: 'page', tunes: [] });
    expect(requests.map((request) => request.workspaceId)).toEqual([null, null]);
  });

  it('another workspace sees none of them either', async () => {
    const tune = astria.addTune();
    expect((await client('7').getTune(String(tune.id))).kind).toBe('gone');
  });
});
