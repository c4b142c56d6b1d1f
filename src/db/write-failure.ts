/**
 * A write PostgreSQL refused for this row (a value it rejects, a lock held past lock_timeout, a
 * statement timeout) is that model's failure; a connection lost or refused is everyone's.
 */
export function isModelWriteFailure(error: unknown): boolean {
  const code = sqlState(error);
  if (code === null) return false;
  const everyone = ['08', '53', '28', '3D', '57P01', '57P02', '57P03'];
  return !everyone.some((prefix) => code.startsWith(prefix));
}

/**
 * The SQLSTATE of PostgreSQL's answer to a statement, or null when the error is no such answer (a
 * connection lost or refused, a driver's own error). Read from the error's fields, not its class: an
 * app with its own copy of `pg` throws that copy's `DatabaseError`, no instance of ours.
 */
function sqlState(error: unknown): string | null {
  // pg's DatabaseError, whichever copy: a server's report has a severity, Node's own errors (EPIPE) none.
  const code = field(error, 'code');
  if (typeof code === 'string' && SQLSTATE.test(code) && typeof field(error, 'severity') === 'string') return code;
  // Prisma's driver adapters keep the server's code as `originalCode`, set for server answers only.
  const adapterCause = field(field(field(error, 'meta'), 'driverAdapterError'), 'cause');
  const adapterCode = field(adapterCause, 'originalCode');
  return typeof adapterCode === 'string' && SQLSTATE.test(adapterCode) ? adapterCode : null;
}

const SQLSTATE = /^[0-9A-Z]{5}$/;

function field(value: unknown, name: string): unknown {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[name] : undefined;
}
