import { randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createMetrics } from '../../src/metrics.js';
import { createLeaderElection } from '../../src/reconciler/leader.js';
import { waitUntil } from '../support/daemon.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(() => db.drop());

/** A TCP proxy to the database that can go silent: bytes stop flowing both ways, no socket closes. */
async function startFreezableProxy(target: URL): Promise<{ url: string; freeze(): void; close(): Promise<void> }> {
  const sockets: Socket[] = [];
  let frozen = false;
  const server: Server = createServer((client) => {
    const upstream = connect(Number(target.port || 5432), target.hostname);
    sockets.push(client, upstream);
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      from.on('data', (chunk) => {
        if (!frozen) to.write(chunk);
      });
      from.on('error', () => undefined);
      from.on('close', () => to.destroy());
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as { port: number }).port);
  return {
    url: url.toString(),
    freeze: () => void (frozen = true),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

it('a leader whose lock connection goes silent (a hung path) ends its term within seconds, with no refresh called', async () => {
  const proxy = await startFreezableProxy(new URL(db.url));
  const election = createLeaderElection({
    databaseUrl: proxy.url,
    lockName: `astria_reconciler:leader:test_${randomBytes(4).toString('hex')}`,
    log: pino({ level: 'silent' }),
    metrics: createMetrics(),
    connectTimeoutMs: 2_000,
    heartbeatMs: 500,
  });
  try {
    expect(await election.refresh()).toBe(true);
    const term = election.termSignal();
    // Still leader while the path is fine: the heartbeat alone does not end a healthy term.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(term.aborted).toBe(false);

    proxy.freeze();
    await waitUntil(() => term.aborted, 8_000, 'the term to end after the path went silent');
    expect(election.isLeader()).toBe(false);
  } finally {
    await election.release();
    await proxy.close();
  }
}, 20_000);
