import { createServer } from 'node:net';
import { startCli, type CliResult } from './cli.js';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export async function waitUntil(condition: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await condition()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export interface RunningDaemon {
  url: string;
  pid: number;
  done: Promise<CliResult>;
  output(): string;
  exited(): boolean;
  kill(signal: NodeJS.Signals): void;
}

/**
 * Starts the built CLI as a daemon on a free loopback port and waits for /livez, then (unless
 * `waitForReady` is false: a database that is down or wrong) for /readyz: HTTP is up before the
 * daemon has checked its database.
 */
export async function startDaemon(env: Record<string, string>, options: { waitForReady?: boolean } = {}): Promise<RunningDaemon> {
  const port = await freePort();
  const { child, done } = startCli([], { RECONCILER_HTTP_HOST: '127.0.0.1', RECONCILER_HTTP_PORT: String(port), ...env });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  let exited = false;
  void done.then(() => (exited = true));
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(
    async () => {
      if (exited) throw new Error(`daemon exited during start:\n${output}`);
      return fetch(`${url}/livez`).then(
        (res) => res.ok,
        () => false,
      );
    },
    15_000,
    'the daemon to answer /livez',
  );
  if (options.waitForReady ?? true) {
    await waitUntil(
      () => fetch(`${url}/readyz`).then((res) => res.status === 200, () => false),
      15_000,
      'the daemon to answer /readyz 200',
    );
  }
  return { url, pid: child.pid!, done, output: () => output, exited: () => exited, kill: (signal) => child.kill(signal) };
}
