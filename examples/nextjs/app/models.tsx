'use client';

import { useEffect, useState } from 'react';
import type { GenerationView, ModelView } from '@/lib/models';

/** What a model's element reads: progress while in flight, "Pronto" when ready, the error on failure. */
export function statusText(model: ModelView): string {
  if (model.status === 'READY') return 'Pronto';
  if (model.status === 'ERROR') return model.errorMessage ?? 'Erro no treinamento';
  return `Preparando... (${model.progress}%)`;
}

/** What a generation's element reads. */
export function generationText(generation: GenerationView): string {
  if (generation.status === 'COMPLETED') return 'Imagens prontas';
  if (generation.status === 'FAILED') return generation.errorMessage ?? 'A geração falhou';
  return 'Gerando imagens...';
}

type ModelLiveEvent = {
  kind: 'model_status_changed' | 'model_progress';
  modelId: string;
  status: string;
  progress: number;
  data?: { errorMessage: string | null };
};

type GenerationLiveEvent = {
  kind: 'generation_status_changed';
  generationId: string;
  modelId: string | null;
  status: string;
  data: { imageUrls: string[]; imageCount: number; errorMessage: string | null };
};

type LiveEvent = ModelLiveEvent | GenerationLiveEvent;

/** READY and DELETED are never left (the status rules): an event older than the list read says nothing new. */
const FINAL_STATUSES = new Set(['READY', 'DELETED']);

function withEvent(model: ModelView, event: LiveEvent): ModelView {
  if (model.id !== event.modelId) return model;
  if (event.kind === 'generation_status_changed') return withGenerationEvent(model, event);
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
 * A generation's change, under its model. COMPLETED is never left. One the page does not list yet
 * (asked for in another tab, or its event came before the answer of its own request) is added.
 */
function withGenerationEvent(model: ModelView, event: GenerationLiveEvent): ModelView {
  const listed = model.generations.find((generation) => generation.id === event.generationId);
  if (listed?.status === 'COMPLETED' && event.status !== 'COMPLETED') return model;
  const changed: GenerationView = {
    ...(listed ?? { id: event.generationId, prompt: '' }),
    status: event.status,
    imageUrls: event.data.imageUrls,
    errorMessage: event.data.errorMessage,
  };
  const generations = listed ? model.generations.map((generation) => (generation === listed ? changed : generation)) : [...model.generations, changed];
  return { ...model, generations };
}

/** The answer to the page's own request for images: added unless its first event already brought it. */
function withGeneration(model: ModelView, created: GenerationView): ModelView {
  const listed = model.generations.find((generation) => generation.id === created.id);
  if (!listed) return { ...model, generations: [...model.generations, created] };
  return { ...model, generations: model.generations.map((generation) => (generation === listed ? { ...listed, prompt: created.prompt } : generation)) };
}

/** Statuses a model waits in: while one is shown and the stream is down, the page polls. */
const IN_FLIGHT_STATUSES = new Set(['UPLOADING', 'PROCESSING', 'TRAINING']);
/** How often the page polls its status route while the event stream is down. */
const POLL_INTERVAL_MS = 10_000;

/**
 * Reads the list (models and their generations) on every (re)connection of the event stream
 * (`ready`), then applies each event to the model it names, a generation's under its model. Events
 * that arrive while a read is under way are applied again on top of what it returns (the read may
 * predate them): nothing committed while the stream was down is missed.
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
      const event = { ...JSON.parse(message.data), kind: message.type } as LiveEvent;
      for (const seen of duringReads) seen.push(event);
      setModels((list) => (list === null ? list : list.map((model) => withEvent(model, event))));
      // An event carries the image URLs that fit a NOTIFY: the list read has them all.
      if (event.kind === 'generation_status_changed' && event.data.imageCount > event.data.imageUrls.length) void refetch();
    };
    const open = () => {
      const stream = (source = new EventSource('/api/models/events'));
      stream.addEventListener('ready', () => {
        setStreamDown(false);
        void refetch();
      });
      stream.addEventListener('model_status_changed', apply);
      stream.addEventListener('model_progress', apply);
      stream.addEventListener('generation_status_changed', apply);
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
      const fresh = (await response.json()) as Omit<ModelView, 'name' | 'generations'>[];
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
  const created = (modelId: string, generation: GenerationView) =>
    setModels((list) => (list === null ? list : list.map((model) => (model.id === modelId ? withGeneration(model, generation) : model))));
  return (
    <ul>
      {models.map((model) => (
        <li key={model.id}>
          {model.name || model.id}: <span data-model-id={model.id}>{statusText(model)}</span>
          {model.status === 'READY' && <GenerateForm modelId={model.id} onCreated={(generation) => created(model.id, generation)} />}
          {model.generations.length > 0 && (
            <ul>
              {model.generations.map((generation) => (
                <li key={generation.id} data-generation-id={generation.id}>
                  {generation.prompt && <q>{generation.prompt}</q>} <span data-generation-status>{generationText(generation)}</span>
                  {generation.status === 'COMPLETED' &&
                    generation.imageUrls.map((url, index) => (
                      // Astria's URLs, as the reconciler wrote them; the app's own copies are in stored_images.
                      // eslint-disable-next-line @next/next/no-img-element
                      <img key={`${index}:${url}`} src={url} alt={`${generation.prompt} (${index + 1})`} width={128} height={128} />
                    ))}
                </li>
              ))}
            </ul>
          )}
        </li>
      ))}
    </ul>
  );
}

/** Asks for images of a READY model (POST /api/generations); the new generation shows at once, then live. */
function GenerateForm({ modelId, onCreated }: { modelId: string; onCreated: (generation: GenerationView) => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const submit = async (prompt: string) => {
    setBusy(true);
    setError(null);
    try {
      const response = await fetch('/api/generations', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ modelId, prompt }),
      });
      const body = (await response.json().catch(() => ({}))) as GenerationView & { error?: string };
      if (response.ok) onCreated(body);
      else setError(body.error ?? `Erro ${response.status}`);
    } catch {
      setError('Sem conexão');
    } finally {
      setBusy(false);
    }
  };
  return (
    <form
      data-generate-for={modelId}
      onSubmit={(event) => {
        event.preventDefault();
        void submit(String(new FormData(event.currentTarget).get('prompt') ?? ''));
      }}
    >
      <input name="prompt" aria-label="Descrição das imagens" defaultValue="ohwx person, retrato em estúdio" maxLength={1000} />
      <button type="submit" disabled={busy}>
        Gerar imagens
      </button>
      {error && <span role="alert">{error}</span>}
    </form>
  );
}
