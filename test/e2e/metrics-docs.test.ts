/**
 * The metrics the documentation names and the metrics the built daemon exposes are the same set: a
 * documented metric that does not exist sends an operator after nothing, an undocumented one is a
 * number nobody can read. Documentation: README.md and the pages directly under docs/.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { startDaemon, type RunningDaemon } from '../support/daemon.js';

const API_KEY = 'sd_metrics_docs_test';
const root = new URL('../../', import.meta.url);

function documentation(): { file: string; text: string }[] {
  // The pages directly under docs/ (drafts in subfolders are not documentation yet).
  const docs = readdirSync(new URL('docs/', root), { withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.md'))
    .map((entry) => `${entry.parentPath}/${entry.name}`);
  return [new URL('README.md', root).pathname, ...docs].map((file) => ({ file, text: readFileSync(file, 'utf8') }));
}

let db: TestDatabase;
let astria: SimulatedAstria;
let daemon: RunningDaemon;
/** Every astria_reconciler_* metric the daemon registers (by its `# TYPE` line: labelled ones without samples yet too). */
let exposed: Map<string, string>;

beforeAll(async () => {
  db = await createTestDatabase();
  astria = await startSimulatedAstria({ apiKey: API_KEY });
  daemon = await startDaemon({ DATABASE_URL: db.url, ASTRIA_API_KEY: API_KEY, ASTRIA_API_URL: astria.url, LOG_LEVEL: 'warn' });
  const text = await (await fetch(`${daemon.url}/metrics`)).text();
  exposed = new Map([...text.matchAll(/^# TYPE (astria_reconciler_[a-z0-9_]+) (\w+)$/gm)].map(([, name, type]) => [name!, type!]));
}, 60_000);

afterAll(async () => {
  daemon?.kill('SIGTERM');
  await daemon?.done;
  await astria?.close();
  await db?.drop();
});

describe('documented metrics against a live /metrics of the built daemon', () => {
  it('every metric the documentation names exists, and every one exposed is documented', () => {
    expect(exposed.size).toBeGreaterThan(10);
    const documented = new Map<string, string>();
    for (const { file, text } of documentation()) {
      for (const [name] of text.matchAll(/\bastria_reconciler_[a-z0-9_]+/g)) {
        // A histogram's series (_bucket, _sum, _count) name the histogram.
        const base = name.replace(/_(bucket|sum|count)$/, '');
        documented.set(exposed.get(base) === 'histogram' ? base : name, file.slice(new URL(root).pathname.length));
      }
    }
    expect([...documented].filter(([name]) => !exposed.has(name)).map(([name, file]) => `${file}: ${name}`)).toEqual([]);
    expect([...exposed.keys()].filter((name) => !documented.has(name))).toEqual([]);
  });
});
