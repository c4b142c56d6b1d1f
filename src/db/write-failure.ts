import pg from 'pg';

/**
 * A write PostgreSQL refused for this row (a value it rejects, a lock held past lock_timeout, a
 * statement timeout) is that model's failure; a connection lost or refused is everyone's.
 */
export function isModelWriteFailure(error: unknown): boolean {
  if (!(error instanceof pg.DatabaseError) || !error.code) return false;
  const everyone = ['08', '53', '28', '3D', '57P01', '57P02', '57P03'];
  return !everyone.some((prefix) => error.code!.startsWith(prefix));
}
