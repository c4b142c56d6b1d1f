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

/**
 * Reads the list on every (re)connection of the event stream (`ready`), then applies each event to
 * the model it names. Events that arrive while a read is under way are applied again on top of what
 * it returns (the read may predate them): nothing committed while the stream was down is missed.
 */
export function Models() {
  const [models, setModels] = useState<ModelView[] | null>(null);
  const [signedOut, setSignedOut] = useState(false);

  useEffect(() => {
    let current = true;
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
        setModels(seen.reduce((models, event) => models.map((model) => withEvent(model, event)), list));
      } finally {
        duringReads.delete(seen);
      }
    };
    const apply = (message: MessageEvent<string>) => {
      const event = { ...(JSON.parse(message.data) as Omit<LiveEvent, 'kind'>), kind: message.type as LiveEvent['kind'] };
      for (const seen of duringReads) seen.push(event);
      setModels((list) => (list === null ? list : list.map((model) => withEvent(model, event))));
    };
    const source = new EventSource('/api/models/events');
    source.addEventListener('ready', () => void refetch());
    source.addEventListener('model_status_changed', apply);
    source.addEventListener('model_progress', apply);
    return () => {
      current = false;
      source.close();
    };
  }, []);

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
