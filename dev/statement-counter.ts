/**
 * Counts and times the statements a `pg.Pool` runs, for benchmarks and tests that ask how many
 * statements some work costs: the database stays real, only the client's calls are watched. Every
 * connection the pool opens after `countStatements` is wrapped (`pool.query` runs on those too).
 */
import { performance } from 'node:perf_hooks';
import type pg from 'pg';

export interface StatementCounter {
  /** Statements sent since the last `reset` (BEGIN and COMMIT included). */
  readonly statements: number;
  /** Their time from send to answer, summed (loopback: about the database's time). */
  readonly busyMs: number;
  /** Their SQL text, in the order sent. */
  readonly texts: readonly string[];
  reset(): void;
}

type QueryCallback = (error: Error | null, result: unknown) => void;

export function countStatements(pool: pg.Pool): StatementCounter {
  const counter = { statements: 0, busyMs: 0, texts: [] as string[] };
  pool.on('connect', (client) => {
    const original = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as { query: unknown }).query = (...args: unknown[]) => {
      const first = args[0];
      counter.statements += 1;
      counter.texts.push(typeof first === 'string' ? first : String((first as { text?: unknown } | null)?.text ?? ''));
      const started = performance.now();
      const done = () => (counter.busyMs += performance.now() - started);
      const callbackAt = args.findIndex((arg) => typeof arg === 'function');
      if (callbackAt >= 0) {
        const callback = args[callbackAt] as QueryCallback;
        args[callbackAt] = (error: Error | null, result: unknown) => {
          done();
          callback(error, result);
        };
        return original(...args);
      }
      const result = original(...args);
      if (result instanceof Promise) void result.then(done, done);
      return result;
    };
  });
  return {
    get statements() {
      return counter.statements;
    },
    get busyMs() {
      return counter.busyMs;
    },
    get texts() {
      return counter.texts;
    },
    reset() {
      counter.statements = 0;
      counter.busyMs = 0;
      counter.texts = [];
    },
  };
}
