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
  modelId: string;
  status: string;
  progress: number;
  data?: { errorMessage: string | null };
}

/**
 * Reads the list on every (re)connection of the event stream (`ready`), then applies each event to
 * the model it names: nothing committed while the stream was down is missed.
 */
export function Models() {
  const [models, setModels] = useState<ModelView[] | null>(null);
  const [signedOut, setSignedOut] = useState(false);

  useEffect(() => {
    let current = true;
    const refetch = async () => {
      const response = await fetch('/api/models', { cache: 'no-store' });
      if (!current) return;
      if (response.status === 401) return setSignedOut(true);
      if (response.ok) setModels((await response.json()) as ModelView[]);
    };
    const apply = (message: MessageEvent<string>) => {
      const event = JSON.parse(message.data) as LiveEvent;
      setModels((list) =>
        list === null
          ? list
          : list.map((model) =>
              model.id !== event.modelId
                ? model
                : {
                    ...model,
                    status: event.status,
                    progress: Math.max(model.progress, event.progress),
                    errorMessage: event.data ? event.data.errorMessage : model.errorMessage,
                  },
            ),
      );
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
