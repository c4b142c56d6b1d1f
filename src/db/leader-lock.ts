import type pg from 'pg';

/**
 * Leadership's statements, on the dedicated connection that holds the session advisory lock (a pooled
 * one would hand the session back and lose it).
 */

/** Takes the session lock named `lockName` if no other session holds it; whether this session holds it now. */
export async function tryLeaderLock(client: pg.ClientBase, lockName: string): Promise<boolean> {
  const { rows } = await client.query<{ acquired: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS acquired', [lockName]);
  return rows[0]?.acquired === true;
}

/** Proves the session (and with it the lock) is still there: throws when it is not. */
export async function pingSession(client: pg.ClientBase): Promise<void> {
  await client.query('SELECT 1');
}

/** Whether this session still holds an advisory lock: the session may be gone with our side none the wiser. */
export async function holdsAdvisoryLock(client: pg.ClientBase): Promise<boolean> {
  const { rows } = await client.query<{ held: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()) AS held`,
  );
  return rows[0]?.held === true;
}
