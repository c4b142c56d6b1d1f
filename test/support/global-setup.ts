import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../../dev/embedded-postgres.js';

declare module 'vitest' {
  export interface ProvidedContext {
    adminDatabaseUrl: string;
  }
}

/**
 * Provides the admin URL of the PostgreSQL server every test database is created on: the one named by
 * TEST_DATABASE_URL (CI runs against a real server version), else an embedded one for this run only.
 */
export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const external = process.env.TEST_DATABASE_URL;
  if (external) {
    console.log(`[test] PostgreSQL from TEST_DATABASE_URL: ${redact(external)}`);
    project.provide('adminDatabaseUrl', external);
    return undefined;
  }
  const started = Date.now();
  const server = await startEmbeddedPostgres();
  console.log(`[test] embedded PostgreSQL at ${redact(server.url)} (started in ${Date.now() - started} ms)`);
  project.provide('adminDatabaseUrl', server.url);
  return () => server.stop();
}

function redact(databaseUrl: string): string {
  const url = new URL(databaseUrl);
  if (url.password) url.password = '***';
  return url.toString();
}
