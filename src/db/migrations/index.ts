import { initial } from './000001-initial.js';
import { databaseClock } from './000002-database-clock.js';
import { generationEvents } from './000003-generation-events.js';
import { costFollowsWork } from './000004-cost-follows-work.js';

export interface Migration {
  /** Applied in increasing order, each once; recorded in `<schema>.migrations`. Never renumbered. */
  id: number;
  name: string;
  /** Its statements, one per call (Prisma's driver runs one statement at a time), for the quoted schema. */
  statements(schema: string): string[];
}

/** Every migration of our own schema, in order. A new one is appended here with the next id. */
export const MIGRATIONS: readonly Migration[] = [
  { id: 1, name: 'initial', statements: initial },
  { id: 2, name: 'database-clock', statements: databaseClock },
  { id: 3, name: 'generation-events', statements: generationEvents },
  { id: 4, name: 'cost-follows-work', statements: costFollowsWork },
];
