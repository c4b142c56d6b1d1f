import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { seedModels as seedVibephotoModels, type SeedModel } from '../../dev/host-schema.js';
import { DEFAULT_HOST_SCHEMA, hostSchemaFromMapping, type HostMapping, type HostSchema } from '../../src/db/host-names.js';
import type { GenerationStatus, ModelStatus } from '../../src/model.js';
import { readModel as readVibephotoModel, type ModelRow } from './database.js';
import {
  GENERATIONS_SCHEMA_SQL,
  readGeneration as readVibephotoGeneration,
  seedGenerations as seedVibephotoGenerations,
  type SeedGeneration,
  type StoredGeneration,
} from './generations-schema.js';

type Queryable = pg.Pool | pg.ClientBase;

/**
 * The app's tables a suite runs against, seeded and read back in the canonical terms the suite
 * asserts (statuses PROCESSING, READY...; `ai_models`' column names), whatever the tables call them:
 * the same race and lag suites run on vibephoto's tables and on an app with other names.
 */
export interface HostFixture {
  name: string;
  /** What the product is given (`host` of the library and deps). */
  host: HostSchema;
  /** The `RECONCILER_HOST_MAPPING` file of the built CLI; null for vibephoto's tables (no mapping). */
  mappingFile(): string | null;
  /** Creates the generations table (and the models table when it is not vibephoto's, which every test database has). */
  install(db: Queryable): Promise<void>;
  /** Deletes every generation and model. */
  clear(db: Queryable): Promise<void>;
  seedModels(db: Queryable, models: SeedModel[]): Promise<void>;
  readModel(db: Queryable, id: string): Promise<ModelRow>;
  /** A raw status write by the app (another writer), in canonical terms. */
  setModelStatus(db: Queryable, id: string, status: ModelStatus): Promise<void>;
  seedGenerations(db: Queryable, generations: SeedGeneration[], now?: Date): Promise<void>;
  readGeneration(db: Queryable, id: string): Promise<StoredGeneration>;
}

/** vibephoto's own tables: `ai_models` and `generations` with their Prisma enums. */
export const vibephoto: HostFixture = {
  name: 'vibephoto tables',
  host: DEFAULT_HOST_SCHEMA,
  mappingFile: () => null,
  install: async (db) => void (await db.query(GENERATIONS_SCHEMA_SQL)),
  clear: async (db) => void (await db.query('DELETE FROM generations; DELETE FROM ai_models')),
  seedModels: seedVibephotoModels,
  readModel: readVibephotoModel,
  setModelStatus: async (db, id, status) => void (await db.query(`UPDATE ai_models SET status = $2::"ModelStatus" WHERE id = $1`, [id, status])),
  seedGenerations: seedVibephotoGenerations,
  readGeneration: readVibephotoGeneration,
};

const MODEL_VALUES: Record<ModelStatus, string> = {
  UPLOADING: 'uploading',
  PROCESSING: 'processing',
  TRAINING: 'training',
  READY: 'finished',
  ERROR: 'failed',
  DELETED: 'deleted',
};
const GENERATION_VALUES: Record<GenerationStatus, string> = { PENDING: 'queued', PROCESSING: 'running', COMPLETED: 'done', FAILED: 'failed' };

/**
 * Another app's names for the same things: schema-qualified tables (one whose name needs quoting),
 * snake_case columns, a text status with lower-case values, timestamptz times and the image URLs as
 * `text[]` (vibephoto: `jsonb[]`).
 */
export const RENAMED_MAPPING = {
  models: {
    schema: 'studio',
    table: 'Trained Models',
    columns: {
      id: 'model_key',
      userId: 'owner_id',
      status: 'state',
      trainingJobId: 'astria_tune',
      aiProvider: 'vendor',
      progress: 'percent_done',
      estimatedTime: 'minutes_left',
      trainedAt: 'trained_on',
      modelUrl: 'weights_ref',
      errorMessage: 'failure',
      createdAt: 'created_on',
      updatedAt: 'changed_on',
    },
    statuses: MODEL_VALUES,
  },
  generations: {
    schema: 'studio',
    table: 'images',
    columns: {
      id: 'image_key',
      userId: 'owner_id',
      modelId: 'model_key',
      aiProvider: 'vendor',
      jobId: 'astria_prompt',
      status: 'state',
      imageUrls: 'urls',
      errorMessage: 'failure',
      completedAt: 'finished_on',
      createdAt: 'created_on',
      updatedAt: 'changed_on',
    },
    statuses: GENERATION_VALUES,
  },
} satisfies HostMapping;

const RENAMED_SQL = `
CREATE SCHEMA studio;
CREATE TABLE studio."Trained Models" (
  model_key text PRIMARY KEY,
  owner_id text NOT NULL,
  title text NOT NULL DEFAULT 'a model',
  state text NOT NULL DEFAULT 'uploading',
  vendor text,
  astria_tune text,
  percent_done int NOT NULL DEFAULT 0,
  minutes_left int,
  trained_on timestamptz,
  weights_ref text,
  failure text,
  created_on timestamptz NOT NULL DEFAULT now(),
  changed_on timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON studio."Trained Models" (astria_tune);
CREATE TABLE studio.images (
  image_key text PRIMARY KEY,
  owner_id text NOT NULL,
  model_key text REFERENCES studio."Trained Models" (model_key),
  vendor text,
  astria_prompt text,
  state text NOT NULL DEFAULT 'queued',
  urls text[] NOT NULL DEFAULT '{}',
  failure text,
  credits_back boolean NOT NULL DEFAULT false,
  finished_on timestamptz,
  created_on timestamptz NOT NULL DEFAULT now(),
  changed_on timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON studio.images (astria_prompt);
`;

const canonical = <S extends string>(values: Record<S, string>, value: string): S => (Object.entries(values) as [S, string][]).find(([, v]) => v === value)![0];

let mappingPath: string | undefined;

export const renamed: HostFixture = {
  name: 'renamed tables with a text status',
  host: hostSchemaFromMapping(RENAMED_MAPPING),
  mappingFile() {
    if (mappingPath === undefined) {
      mappingPath = join(mkdtempSync(join(tmpdir(), 'host-mapping-')), 'mapping.json');
      writeFileSync(mappingPath, JSON.stringify(RENAMED_MAPPING));
    }
    return mappingPath;
  },
  install: async (db) => void (await db.query(RENAMED_SQL)),
  clear: async (db) => void (await db.query('DELETE FROM studio.images; DELETE FROM studio."Trained Models"')),

  async seedModels(db, models) {
    const hourAgo = new Date(Date.now() - 3_600_000).toISOString();
    for (const model of models) {
      await db.query(
        `INSERT INTO studio."Trained Models" (model_key, owner_id, state, vendor, astria_tune, percent_done, minutes_left, failure, created_on, changed_on)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [
          model.id,
          model.userId ?? 'user-1',
          MODEL_VALUES[model.status],
          model.aiProvider === undefined ? 'astria' : model.aiProvider,
          model.trainingJobId,
          model.progress ?? 0,
          model.estimatedTime ?? null,
          model.errorMessage ?? null,
          model.createdAt?.toISOString() ?? hourAgo,
          model.updatedAt?.toISOString() ?? hourAgo,
        ],
      );
    }
  },

  async readModel(db, id) {
    const { rows } = await db.query<ModelRow>(
      `SELECT model_key AS id, owner_id AS "userId", state AS status, percent_done AS progress, vendor AS "aiProvider",
              astria_tune AS "trainingJobId", weights_ref AS "modelUrl", trained_on AS "trainedAt", failure AS "errorMessage",
              minutes_left AS "estimatedTime", created_on AS "createdAt", changed_on AS "updatedAt"
         FROM studio."Trained Models" WHERE model_key = $1`,
      [id],
    );
    if (!rows[0]) throw new Error(`model ${id} not found`);
    return { ...rows[0], status: canonical(MODEL_VALUES, rows[0].status) };
  },

  async setModelStatus(db, id, status) {
    await db.query(`UPDATE studio."Trained Models" SET state = $2 WHERE model_key = $1`, [id, MODEL_VALUES[status]]);
  },

  async seedGenerations(db, generations, now = new Date()) {
    for (const generation of generations) {
      await db.query(
        `INSERT INTO studio.images (image_key, owner_id, model_key, vendor, astria_prompt, state, urls, failure, created_on, changed_on)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [
          generation.id,
          generation.userId ?? 'user-1',
          generation.modelId,
          generation.aiProvider === undefined ? 'astria' : generation.aiProvider,
          generation.jobId,
          GENERATION_VALUES[generation.status],
          generation.imageUrls ?? [],
          generation.errorMessage ?? null,
          (generation.createdAt ?? now).toISOString(),
          (generation.updatedAt ?? generation.createdAt ?? now).toISOString(),
        ],
      );
    }
  },

  async readGeneration(db, id) {
    const { rows } = await db.query<StoredGeneration>(
      `SELECT image_key AS id, owner_id AS "userId", model_key AS "modelId", vendor AS "aiProvider", astria_prompt AS "jobId", state AS status,
              urls AS "imageUrls", failure AS "errorMessage", finished_on AS "completedAt", created_on AS "createdAt", changed_on AS "updatedAt",
              credits_back AS "creditsRefunded"
         FROM studio.images WHERE image_key = $1`,
      [id],
    );
    if (!rows[0]) throw new Error(`image ${id} not found`);
    return { ...rows[0], status: canonical(GENERATION_VALUES, rows[0].status) };
  },
};

/** The two host schemas the core race and lag suites run against. */
export const HOST_FIXTURES: readonly HostFixture[] = [vibephoto, renamed];
