'use client';

import { useEffect, useState } from 'react';
import type { ModelView } from '@/lib/models';

/** What a model's element reads: progress while in flight, "Pronto" when ready, the error on failure. */
export function statusText(model: ModelView): string {
  if (model.status === 'READY') return 'Pronto';
  if (model.status === 'ERROR') return model.errorMessage ?? 'Erro no treinamento';
  return `Preparando... (${model.progress}%)`;
}

interface LiveEvent {
  kind: 'model_status_changed' | 'model_progress';
  modelId: string;
  status: string;
  progress: number;
  data?: { errorMessage: string | null };
}

/** READY and DELETED are never left (the status rules): an event older than the list read says nothing new. */
const FINAL_STATUSES = new Set(['READY', 'DELETED']);

function withEvent(model: ModelView, event: LiveEvent): ModelView {
  if (model.id !== event.modelId) return model;
  // Progress never changes the status; a status change never leaves READY or DELETED.
  if (event.kind === 'model_progress') return { ...model, progress: Math.max(model.progress, event.progress) };
  if (FINAL_STATUSES.has(model.status) && event.status !== model.status) return model;
  return {
    ...model,
    status: event.status,
    progress: Math.max(model.progress, event.progress),
    errorMessage: event.data ? event.data.errorMessage : model.errorMessage,
  };
}

/** Statuses a model waits in: while one is shown and the stream is down, the page polls. */
const IN_FLIGHT_STATUSES = new Set(['UPLOADING', 'PROCESSING', 'TRAINING']);
/** How often the page polls its status route while the event stream is down. */
const POLL_INTERVAL_MS = 10_000;

/**
 * Reads the list on every (re)connection of the event stream (`ready`), then applies each event to
 * the model it names. Events that arrive while a read is under way are applied again on top of what
 * it returns (the read may predate them): nothing committed while the stream was down is missed.
 * While the stream is down (a proxy cutting it, the route answering 503) and a model is in flight,
 * the page polls /api/models/status every 10 s instead, and opens the stream again.
 */
export function Models() {
  const [models, setModels] = useState<ModelView[] | null>(null);
  const [signedOut, setSignedOut] = useState(false);
  const [streamDown, setStreamDown] = useState(false);

  useEffect(() => {
    let current = true;
    let listed = false;
    let source: EventSource | null = null;
    let reopen: ReturnType<typeof setTimeout> | undefined;
    const duringReads = new Set<LiveEvent[]>();
    const refetch = async () => {
      const seen: LiveEvent[] = [];
      duringReads.add(seen);
      try {
        const response = await fetch('/api/models', { cache: 'no-store' });
        if (!current) return;
        if (response.status === 401) return setSignedOut(true);
        if (!response.ok) return;
        const list = (await response.json()) as ModelView[];
        listed = true;
        setModels(seen.reduce((models, event) => models.map((model) => withEvent(model, event)), list));
      } catch {
        // The network is down too: the next stream error or reconnection reads again.
      } finally {
        duringReads.delete(seen);
      }
    };
    const apply = (message: MessageEvent<string>) => {
      const event = { ...(JSON.parse(message.data) as Omit<LiveEvent, 'kind'>), kind: message.type as LiveEvent['kind'] };
      for (const seen of duringReads) seen.push(event);
      setModels((list) => (list === null ? list : list.map((model) => withEvent(model, event))));
    };
    const open = () => {
      const stream = (source = new EventSource('/api/models/events'));
      stream.addEventListener('ready', () => {
        setStreamDown(false);
        void refetch();
      });
      stream.addEventListener('model_status_changed', apply);
      stream.addEventListener('model_progress', apply);
      stream.addEventListener('error', () => {
        if (!current) return;
        setStreamDown(true);
        // The first read does not wait for a stream that may not come up.
        if (!listed) void refetch();
        // A stream answered with an error status is not retried by the browser: open it again later.
        if (stream.readyState === EventSource.CLOSED) reopen = setTimeout(open, POLL_INTERVAL_MS);
      });
    };
    open();
    return () => {
      current = false;
      clearTimeout(reopen);
      source?.close();
    };
  }, []);

  // The status route answers 100 ids at most (MAX_IDS): the rest wait for the stream's next `ready`.
  const inFlight = (models ?? []).filter((model) => IN_FLIGHT_STATUSES.has(model.status)).slice(0, 100).map((model) => model.id).join(',');
  useEffect(() => {
    if (!streamDown || inFlight === '') return;
    let current = true;
    const poll = async () => {
      const response = await fetch(`/api/models/status?ids=${encodeURIComponent(inFlight)}`, { cache: 'no-store' }).catch(() => null);
      if (!current || !response?.ok) return;
      const fresh = (await response.json()) as Omit<ModelView, 'name'>[];
      const events = fresh.map((model): LiveEvent => ({ kind: 'model_status_changed', modelId: model.id, status: model.status, progress: model.progress, data: { errorMessage: model.errorMessage } }));
      setModels((list) => (list === null ? list : events.reduce((models, event) => models.map((model) => withEvent(model, event)), list)));
    };
    const timer = setInterval(() => void poll(), POLL_INTERVAL_MS);
    return () => {
      current = false;
      clearInterval(timer);
    };
  }, [streamDown, inFlight]);

  if (signedOut) return <p>Entre para ver seus modelos.</p>;
  if (models === null) return <p>Carregando...</p>;
  if (models.length === 0) return <p>Nenhum modelo ainda.</p>;
  return (
    <ul>
      {models.map((model) => (
        <li key={model.id}>
          {model.name || model.id}: <span data-model-id={model.id}>{statusText(model)}</span>
        </li>
      ))}
    </ul>
  );
}
