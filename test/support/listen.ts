import pg from 'pg';

/** A LISTEN client on a real connection, collecting every notification payload it receives. */
export async function listen(url: string, channel = 'model_status_changed') {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const payloads: unknown[] = [];
  // A test that cuts connections may cut this one; that must fail the waiting test, not crash the run.
  client.on('error', () => undefined);
  client.on('notification', (message) => {
    if (message.channel === channel && message.payload) payloads.push(JSON.parse(message.payload));
  });
  await client.query(`LISTEN ${channel}`);
  return {
    payloads,
    /** Waits until at least `count` notifications arrived (or fails after `timeoutMs`). */
    async waitFor(count: number, timeoutMs = 5_000): Promise<unknown[]> {
      const deadline = Date.now() + timeoutMs;
      while (payloads.length < count) {
        if (Date.now() > deadline) throw new Error(`expected ${count} notifications on ${channel}, got ${payloads.length}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      return payloads;
    },
    /** Gives in-flight notifications a moment to arrive, then returns what came. */
    async settle(ms = 200): Promise<unknown[]> {
      // A round trip on the listening connection flushes any notification queued before it.
      await client.query('SELECT 1');
      await new Promise((resolve) => setTimeout(resolve, ms));
      return payloads;
    },
    close: () => client.end(),
  };
}
