import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { createMetrics, type Metrics } from '../../src/metrics.js';
import { createLeaderElection, type LeaderElection } from '../../src/reconciler/leader.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

const log = pino({ level: 'silent' });
const APPLICATION_NAME = 'astria-reconciler leader';

interface Instance {
  name: string;
  election: LeaderElection;
  metrics: Metrics;
}

/** Every instance a test creates; each is released after the test. */
let instances: Instance[] = [];

function instance(databaseUrl: string, lockName: string, name = `i${instances.length}`): Instance {
  const metrics = createMetrics();
  const election = createLeaderElection({ databaseUrl, lockName, log, metrics, connectTimeoutMs: 3_000 });
  const created = { name, election, metrics };
  instances.push(created);
  return created;
}

function lockName(): string {
  return `astria_reconciler:leader:test_${randomBytes(4).toString('hex')}`;
}

async function gauge(metrics: Metrics): Promise<number> {
  const { values } = await metrics.isLeader.get();
  return values[0]?.value ?? 0;
}

/** Refreshes each instance once, in order; returns the results. */
async function round(group: Instance[]): Promise<boolean[]> {
  const results: boolean[] = [];
  for (const { election } of group) results.push(await election.refresh());
  return results;
}

function leaders(group: Instance[]): Instance[] {
  return group.filter(({ election }) => election.isLeader());
}

/** Backends in this database holding the advisory lock of `name` (pg_try_advisory_lock(hashtext(name))). */
async function lockHolders(db: pg.Pool, name: string): Promise<number[]> {
  const { rows } = await db.query<{ pid: number }>(
    `SELECT l.pid
       FROM pg_locks l
       JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted
        AND a.datname = current_database()
        AND l.classid = ((hashtext($1)::bigint >> 32) & 4294967295)::oid
        AND l.objid = (hashtext($1)::bigint & 4294967295)::oid
        AND l.objsubid = 1`,
    [name],
  );
  return rows.map((row) => row.pid);
}

async function leaderConnections(db: pg.Pool): Promise<number> {
  const { rows } = await db.query<{ count: number }>(
    'SELECT count(*)::int AS count FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1',
    [APPLICATION_NAME],
  );
  return rows[0]!.count;
}

async function expectSoleLeader(group: Instance[], expected?: Instance): Promise<Instance> {
  const current = leaders(group);
  expect(current.map((i) => i.name)).toHaveLength(1);
  const leader = current[0]!;
  if (expected) expect(leader.name).toBe(expected.name);
  for (const member of group) expect(await gauge(member.metrics)).toBe(member === leader ? 1 : 0);
  return leader;
}

afterEach(async () => {
  await Promise.all(instances.map(({ election }) => election.release()));
  instances = [];
});

describe('createLeaderElection', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase();
  });

  afterAll(async () => {
    await db?.drop();
  });

  it('elects exactly one leader among instances sharing a lock name, and keeps it over refreshes', async () => {
    const name = lockName();
    const group = [instance(db.url, name, 'a'), instance(db.url, name, 'b'), instance(db.url, name, 'c')];
    for (const member of group) {
      expect(member.election.isLeader()).toBe(false);
      expect(await gauge(member.metrics)).toBe(0);
    }

    const results = await round(group);
    expect(results.filter(Boolean)).toHaveLength(1);
    // The first to try takes the free lock.
    expect(results).toEqual([true, false, false]);
    const leader = await expectSoleLeader(group, group[0]);
    expect(await leader.metrics.registry.metrics()).toMatch(/^astria_reconciler_is_leader 1$/m);
    expect(await group[1]!.metrics.registry.metrics()).toMatch(/^astria_reconciler_is_leader 0$/m);

    for (let i = 0; i < 5; i++) {
      // Any order: the leader stays leader, the others stay followers.
      expect(await round(i % 2 === 0 ? [...group].reverse() : group)).toEqual(
        i % 2 === 0 ? [false, false, true] : [true, false, false],
      );
      await expectSoleLeader(group, leader);
    }

    // One dedicated connection per instance, and one backend holds the lock.
    expect(await leaderConnections(db.pool)).toBe(3);
    expect(await lockHolders(db.pool, name)).toHaveLength(1);
  });

  it('elects exactly one leader when the instances refresh concurrently', async () => {
    const name = lockName();
    const group = [instance(db.url, name), instance(db.url, name), instance(db.url, name), instance(db.url, name)];
    const results = await Promise.all(group.map(({ election }) => election.refresh()));
    expect(results.filter(Boolean)).toHaveLength(1);
    const leader = await expectSoleLeader(group);
    for (let i = 0; i < 3; i++) {
      await Promise.all(group.map(({ election }) => election.refresh()));
      await expectSoleLeader(group, leader);
    }
  });

  it('elects independently under a different lock name', async () => {
    const first = lockName();
    const second = lockName();
    const groupA = [instance(db.url, first, 'a1'), instance(db.url, first, 'a2'), instance(db.url, first, 'a3')];
    const groupB = [instance(db.url, second, 'b1'), instance(db.url, second, 'b2')];

    await round(groupA);
    await expectSoleLeader(groupA, groupA[0]);
    // Group A's leader does not stop group B from electing its own.
    expect(await round(groupB)).toEqual([true, false]);
    await expectSoleLeader(groupB, groupB[0]);

    for (let i = 0; i < 3; i++) {
      await round([...groupB, ...groupA].reverse());
      await expectSoleLeader(groupA, groupA[0]);
      await expectSoleLeader(groupB, groupB[0]);
    }
    expect(await lockHolders(db.pool, first)).toHaveLength(1);
    expect(await lockHolders(db.pool, second)).toHaveLength(1);
  });

  it('release() gives the leadership up: a follower wins on its next refresh', async () => {
    const name = lockName();
    const group = [instance(db.url, name, 'a'), instance(db.url, name, 'b'), instance(db.url, name, 'c')];
    await round(group);
    const leader = await expectSoleLeader(group, group[0]);
    const term = leader.election.termSignal();
    expect(term.aborted).toBe(false);

    await leader.election.release();
    expect(leader.election.isLeader()).toBe(false);
    // Work started in that term (a pass under way) is told to stop starting more.
    expect(term.aborted).toBe(true);
    expect(await gauge(leader.metrics)).toBe(0);
    expect(await lockHolders(db.pool, name)).toHaveLength(0);

    const followers = group.filter((member) => member !== leader);
    expect(await round(followers)).toEqual([true, false]);
    await expectSoleLeader(group, followers[0]);
    expect(await leaderConnections(db.pool)).toBe(2);

    // Releasing a follower (or releasing twice) is harmless: the leader keeps leading.
    await followers[1]!.election.release();
    await leader.election.release();
    expect(await followers[0]!.election.refresh()).toBe(true);
    await expectSoleLeader(group, followers[0]);

    // A released instance that refreshes again reconnects and competes as an ordinary follower.
    expect(await round([leader, followers[1]!])).toEqual([false, false]);
    await expectSoleLeader(group, followers[0]);
    expect(await leaderConnections(db.pool)).toBe(3);
  });

  it("after the leader's backend is killed its next refresh does not keep the stale leadership, and one instance leads within one more round", async () => {
    const name = lockName();
    const group = [instance(db.url, name, 'a'), instance(db.url, name, 'b'), instance(db.url, name, 'c')];
    await round(group);
    const leader = await expectSoleLeader(group, group[0]);
    const holders = await lockHolders(db.pool, name);
    expect(holders).toHaveLength(1);
    const killed = holders[0]!;

    const { rows } = await db.pool.query<{ terminated: boolean }>('SELECT pg_terminate_backend($1) AS terminated', [killed]);
    expect(rows[0]!.terminated).toBe(true);

    // Right away. Usually the refresh's `SELECT 1` meets the dead session and it answers false. When the
    // connection's error event won the race, the refresh reconnects and, the lock being free, takes it
    // again: then it must hold it on a new backend, never claim the killed one's.
    const again = await leader.election.refresh();
    expect(leader.election.isLeader()).toBe(again);
    expect(await gauge(leader.metrics)).toBe(again ? 1 : 0);
    await vi.waitFor(async () => expect(await lockHolders(db.pool, name)).not.toContain(killed));
    expect(await lockHolders(db.pool, name)).toHaveLength(again ? 1 : 0);

    // One more round of the others: one of them leads (unless the old leader already took it back).
    const followers = group.filter((member) => member !== leader);
    const results = await round(followers);
    expect(results.filter(Boolean)).toHaveLength(again ? 0 : 1);
    const successor = await expectSoleLeader(group, again ? leader : undefined);

    // From then on the old leader (reconnected) and the rest keep to it.
    for (let i = 0; i < 3; i++) {
      await round([...group].reverse());
      await expectSoleLeader(group, successor);
    }
    await vi.waitFor(async () => expect(await leaderConnections(db.pool)).toBe(3));
    expect(await lockHolders(db.pool, name)).toHaveLength(1);
  });

  it('a killed leader refreshing at once never claims the dead session: false, or the lock retaken on a new backend', async () => {
    // The race above, 20 times over; each try is counted by what the refresh saw.
    const outcomes = { lostOnRefresh: 0, retook: 0 };
    for (let attempt = 0; attempt < 20; attempt++) {
      const name = lockName();
      const solo = instance(db.url, name, `solo${attempt}`);
      expect(await solo.election.refresh()).toBe(true);
      const [pid] = await lockHolders(db.pool, name);
      await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
      const result = await solo.election.refresh();
      if (result) {
        outcomes.retook += 1;
        const holders = await lockHolders(db.pool, name);
        expect(holders).toHaveLength(1);
        expect(holders[0]).not.toBe(pid);
      } else {
        outcomes.lostOnRefresh += 1;
        expect(await gauge(solo.metrics)).toBe(0);
      }
      await solo.election.release();
    }
    expect(outcomes.lostOnRefresh + outcomes.retook).toBe(20);
    expect(outcomes.lostOnRefresh).toBeGreaterThan(0);
  });

  it('a leader that lost its connection reconnects on its next refresh and, the lock being free, leads again on a new backend', async () => {
    const name = lockName();
    const group = [instance(db.url, name, 'a'), instance(db.url, name, 'b')];
    await round(group);
    const leader = await expectSoleLeader(group, group[0]);
    const [pid] = await lockHolders(db.pool, name);
    await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
    await vi.waitFor(() => expect(leader.election.isLeader()).toBe(false));
    await vi.waitFor(async () => expect(await lockHolders(db.pool, name)).toHaveLength(0));

    expect(await leader.election.refresh()).toBe(true);
    const holders = await lockHolders(db.pool, name);
    expect(holders).toHaveLength(1);
    expect(holders[0]).not.toBe(pid);
    expect(await group[1]!.election.refresh()).toBe(false);
    await expectSoleLeader(group, leader);
  });

  it('a leader whose connection is lost notices it without a refresh; one instance leads again after one round', async () => {
    const name = lockName();
    const group = [instance(db.url, name, 'a'), instance(db.url, name, 'b'), instance(db.url, name, 'c')];
    await round(group);
    const leader = await expectSoleLeader(group, group[0]);
    const [pid] = await lockHolders(db.pool, name);

    await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
    // The connection's error/end event drops the leadership (and the gauge) between refreshes.
    await vi.waitFor(async () => {
      expect(leader.election.isLeader()).toBe(false);
      expect(await gauge(leader.metrics)).toBe(0);
    });
    await vi.waitFor(async () => expect(await lockHolders(db.pool, name)).toHaveLength(0));

    // The others first: one of them takes over; the old leader comes back as a follower.
    const followers = group.filter((member) => member !== leader);
    expect(await round(followers)).toEqual([true, false]);
    expect(await leader.election.refresh()).toBe(false);
    await expectSoleLeader(group, followers[0]);
  });

  it('when the leader dies, refreshes in any order bring exactly one leader back', async () => {
    const name = lockName();
    for (const order of [
      [0, 1, 2],
      [1, 0, 2],
      [2, 1, 0],
    ]) {
      const group = [instance(db.url, name, 'a'), instance(db.url, name, 'b'), instance(db.url, name, 'c')];
      await round(group);
      const leader = await expectSoleLeader(group);
      const [pid] = await lockHolders(db.pool, name);
      await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
      await vi.waitFor(() => expect(leader.election.isLeader()).toBe(false));

      const results = await round(order.map((index) => group[index]!));
      expect(results.filter(Boolean)).toHaveLength(1);
      await expectSoleLeader(group);
      await Promise.all(group.map(({ election }) => election.release()));
    }
  });
});

describe('createLeaderElection while the database refuses connections', () => {
  let db: TestDatabase;
  let admin: pg.Client;
  let databaseName: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    databaseName = decodeURIComponent(new URL(db.url).pathname.slice(1));
    admin = new pg.Client({ connectionString: inject('adminDatabaseUrl') });
    await admin.connect();
  });

  afterAll(async () => {
    if (admin) {
      await admin.query(`ALTER DATABASE ${admin.escapeIdentifier(databaseName)} ALLOW_CONNECTIONS true`).catch(() => undefined);
      await admin.end();
    }
    await db?.drop();
  });

  const allowConnections = (allow: boolean) =>
    admin.query(`ALTER DATABASE ${admin.escapeIdentifier(databaseName)} ALLOW_CONNECTIONS ${allow}`);

  const backends = async () => {
    const { rows } = await admin.query<{ count: number }>(
      'SELECT count(*)::int AS count FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
      [databaseName],
    );
    return rows[0]!.count;
  };

  it('refresh returns false without throwing, and leadership is re-established once connections are allowed again', async () => {
    const name = lockName();
    const group = [instance(db.url, name, 'a'), instance(db.url, name, 'b'), instance(db.url, name, 'c')];
    await round(group);
    await expectSoleLeader(group, group[0]);

    try {
      await allowConnections(false);
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [
        databaseName,
      ]);
      await vi.waitFor(async () => expect(await backends()).toBe(0));

      for (let i = 0; i < 3; i++) {
        for (const member of group) {
          await expect(member.election.refresh()).resolves.toBe(false);
          expect(member.election.isLeader()).toBe(false);
          expect(await gauge(member.metrics)).toBe(0);
        }
      }
      expect(await backends()).toBe(0);
    } finally {
      await allowConnections(true);
    }

    const results = await round(group);
    expect(results.filter(Boolean)).toHaveLength(1);
    const leader = await expectSoleLeader(group);
    for (let i = 0; i < 3; i++) {
      await round(group);
      await expectSoleLeader(group, leader);
    }
    expect(await lockHolders(db.pool, name)).toHaveLength(1);
  });

  it('an instance first started while the database refuses connections becomes leader once it is back', async () => {
    const name = lockName();
    try {
      await allowConnections(false);
      const group = [instance(db.url, name, 'a'), instance(db.url, name, 'b')];
      expect(await round(group)).toEqual([false, false]);
      for (const member of group) expect(await gauge(member.metrics)).toBe(0);
    } finally {
      await allowConnections(true);
    }
    expect(await round(instances)).toEqual([true, false]);
    await expectSoleLeader(instances, instances[0]);
  });
});
