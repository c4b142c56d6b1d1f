import pg from 'pg';
import {
  generationStatusChangedEventSchema,
  modelProgressEventSchema,
  modelStatusChangedEventSchema,
  type GenerationStatusChangedEvent,
  type ModelEvent,
} from 'astria-reconciler';
import { BROADCAST_PG_CHANNEL } from './status';

/** What the page is told: its models' status and progress, and their generations' status. */
export type LiveEvent = ModelEvent | GenerationStatusChangedEvent;

const liveEventSchema = modelStatusChangedEventSchema.or(modelProgressEventSchema).or(generationStatusChangedEventSchema);

export interface ModelEventSubscriber {
  onEvent(event: LiveEvent): void;
  /** The LISTEN connection dropped: close the stream, the browser reconnects and re-reads status. */
  onLost(): void;
}

/** Names the LISTEN session in pg_stat_activity (operators, and the browser test, find it by this). */
export const LISTEN_APPLICATION_NAME = 'app-model-events';

interface Hub {
  client: Promise<pg.Client> | null;
  subscribers: Set<ModelEventSubscriber>;
}

// One LISTEN connection per server instance, shared by every open stream on it. This is not the
// "in-memory broadcast" that fails on serverless: every instance LISTENs to PostgreSQL itself, so an
// event committed by any instance (or by the reconciler sidecar) reaches the streams of all of them.
const globalForEvents = globalThis as unknown as { astriaModelEvents?: Hub };
const hub: Hub = (globalForEvents.astriaModelEvents ??= { client: null, subscribers: new Set() });

/** Ends a connection we no longer listen on, quietly. */
function release(client: pg.Client): void {
  client.removeAllListeners();
  client.on('error', () => undefined);
  void client.end().catch(() => undefined);
}

/** The LISTEN connection failed: every stream on it is told, and the next subscriber connects afresh. */
function drop(client: pg.Client): void {
  hub.client = null;
  const subscribers = [...hub.subscribers];
  hub.subscribers.clear();
  for (const subscriber of subscribers) subscriber.onLost();
  release(client);
}

async function connect(): Promise<pg.Client> {
  // LISTEN needs a session of its own: a direct connection, not a transaction-mode pooler (PgBouncer,
  // Supavisor :6543, Neon's -pooler host), which would hand the session to someone else.
  const client = new pg.Client({
    connectionString: process.env.DATABASE_URL_UNPOOLED ?? process.env.DATABASE_URL,
    application_name: LISTEN_APPLICATION_NAME,
  });
  client.on('notification', (message) => {
    if (message.channel !== BROADCAST_PG_CHANNEL || !message.payload) return;
    let json: unknown;
    try {
      json = JSON.parse(message.payload);
    } catch {
      return;
    }
    // Status changes and progress; types we do not know (added later) are ignored.
    const parsed = liveEventSchema.safeParse(json);
    if (!parsed.success) return;
    for (const subscriber of hub.subscribers) subscriber.onEvent(parsed.data);
  });
  client.on('error', () => drop(client));
  client.on('end', () => drop(client));
  await client.connect();
  await client.query(`LISTEN ${client.escapeIdentifier(BROADCAST_PG_CHANNEL)}`);
  return client;
}

/** Receives every `model_status_changed`, `model_progress` and `generation_status_changed` until the returned function is called. */
export async function subscribeModelEvents(subscriber: ModelEventSubscriber): Promise<() => void> {
  const pending = (hub.client ??= connect().catch((error: unknown) => {
    hub.client = null;
    throw error;
  }));
  const client = await pending;
  // Lost while we waited: nothing to subscribe to; the caller closes and the browser reconnects.
  if (hub.client !== pending) throw new Error('LISTEN connection lost');
  hub.subscribers.add(subscriber);
  return () => {
    if (!hub.subscribers.delete(subscriber)) return;
    // The last stream on this instance closed: give the connection back.
    if (hub.subscribers.size === 0 && hub.client === pending) {
      hub.client = null;
      release(client);
    }
  };
}
