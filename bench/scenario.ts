/**
 * The world a benchmark pass runs against: a scratch database holding the host app's models and a
 * simulated Astria holding the account's tunes, seeded deterministically from a seed.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { createDatabase, dropDatabase } from '../dev/embedded-postgres.js';
import { HOST_SCHEMA_SQL, seedModels, type SeedModel } from '../dev/host-schema.js';
import { ensureOwnSchema } from '../src/db/own-schema.js';
import { startSimulatedAstria, type SimulatedAstria, type SimulatedTuneInit } from '../dev/simulated-astria.js';

export const API_KEY = 'sd_bench_key';
/** Astria's page size: the floor of a list scan is one call per this many account tunes. */
export const LIST_PAGE_SIZE = 120;

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
const SEED_CHUNK = 5_000;
const USERS = 500;

export interface World {
  databaseUrl: string;
  pool: pg.Pool;
  astria: SimulatedAstria;
  stuckTuneIds: number[];
  accountTunes: number;
  /** Account tunes a list scan must page through: those with id >= the oldest stuck tune. */
  tunesToScan: number;
  /** When each request reached the simulated Astria (performance.now(), ms), from the end of seeding. */
  arrivals: number[];
  dispose(): Promise<void>;
}

/** mulberry32: a tiny seeded PRNG, so every run stuck-marks the same tunes. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** `count` distinct indices out of `0..total-1`, uniformly at random (partial Fisher–Yates). */
function pickIndices(total: number, count: number, random: () => number): Set<number> {
  const indices = Array.from({ length: total }, (_, index) => index);
  for (let index = 0; index < count; index += 1) {
    const swap = index + Math.floor(random() * (total - index));
    [indices[index], indices[swap]] = [indices[swap]!, indices[index]!];
  }
  return new Set(indices.slice(0, count));
}

/** Stuck tunes finished ~1 minute ago (callback lost); the rest finished days ago and are READY. */
function tuneInit(stuck: boolean, random: () => number, now: number): SimulatedTuneInit {
  if (stuck) {
    const trainedAt = now - MINUTE + Math.round((random() - 0.5) * 20_000);
    return { startedTrainingAt: new Date(trainedAt - 30 * MINUTE), trainedAt: new Date(trainedAt) };
  }
  const trainedAt = now - 2 * DAY - Math.round(random() * DAY);
  return { startedTrainingAt: new Date(trainedAt - 30 * MINUTE), trainedAt: new Date(trainedAt) };
}

function modelFor(tuneId: number, stuck: boolean, now: number): SeedModel {
  return {
    id: `model-${tuneId}`,
    userId: `user-${tuneId % USERS}`,
    status: stuck ? 'TRAINING' : 'READY',
    trainingJobId: String(tuneId),
    progress: stuck ? 40 : 100,
    createdAt: new Date(now - 2 * 60 * MINUTE),
    updatedAt: new Date(now - 40 * MINUTE),
  };
}

/** One model per account tune, inserted a chunk at a time so the bench process stays small. */
async function seedHostModels(pool: pg.Pool, tuneIds: number[], stuck: Set<number>, now: number): Promise<void> {
  for (let start = 0; start < tuneIds.length; start += SEED_CHUNK) {
    const chunk = tuneIds.slice(start, start + SEED_CHUNK);
    await seedModels(pool, chunk.map((tuneId) => modelFor(tuneId, stuck.has(tuneId), now)));
  }
}

export async function scratchDatabase(adminUrl: string): Promise<{ url: string; pool: pg.Pool; drop(): Promise<void> }> {
  const name = `astria_reconciler_bench_${randomBytes(4).toString('hex')}`;
  const url = await createDatabase(adminUrl, name);
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  // DROP DATABASE … FORCE may still find a client of this pool closing: that is not an error of the run.
  pool.on('error', () => undefined);
  const drop = async () => {
    await pool.end();
    await dropDatabase(adminUrl, name);
  };
  try {
    await pool.query(HOST_SCHEMA_SQL);
    await ensureOwnSchema(pool, 'astria_reconciler');
  } catch (error) {
    await drop();
    throw error;
  }
  return { url, pool, drop };
}

/** `stuck` models stuck in TRAINING, spread at random over an account of `accountTunes` tunes. */
export async function createWorld(adminUrl: string, accountTunes: number, stuck: number, seed: number): Promise<World> {
  const database = await scratchDatabase(adminUrl);
  const astria = await startSimulatedAstria({ apiKey: API_KEY, latencyMs: 25, maxRps: 20 });
  const dispose = async () => {
    await astria.close();
    await database.drop();
  };
  try {
    const random = prng(seed);
    const now = Date.now();
    const stuckIndices = pickIndices(accountTunes, stuck, random);
    const tuneIds = astria.addTunes(accountTunes, (index) => tuneInit(stuckIndices.has(index), random, now)).map((tune) => tune.id);
    const stuckTuneIds = tuneIds.filter((_, index) => stuckIndices.has(index));
    await seedHostModels(database.pool, tuneIds, new Set(stuckTuneIds), now);
    const oldestStuck = stuckTuneIds.reduce((lowest, id) => Math.min(lowest, id), Infinity);
    astria.resetStats();
    const arrivals: number[] = [];
    astria.onRequest(() => arrivals.push(performance.now()));
    return {
      databaseUrl: database.url,
      pool: database.pool,
      astria,
      stuckTuneIds,
      accountTunes,
      tunesToScan: tuneIds.filter((id) => id >= oldestStuck).length,
      arrivals,
      dispose,
    };
  } catch (error) {
    await dispose();
    throw error;
  }
}

/** How many of the stuck models are READY now. */
export async function countRecovered(world: World): Promise<number> {
  const { rows } = await world.pool.query<{ ready: string }>(
    `SELECT count(*) AS ready FROM ai_models WHERE status = 'READY' AND "trainingJobId" = ANY($1::text[])`,
    [world.stuckTuneIds.map(String)],
  );
  return Number(rows[0]!.ready);
}
