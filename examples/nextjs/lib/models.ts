import type { Generation } from '@/lib/generated/prisma/client';
import { prisma } from './db';

export interface GenerationView {
  id: string;
  prompt: string;
  status: string;
  imageUrls: string[];
  errorMessage: string | null;
}

export interface ModelView {
  id: string;
  name: string;
  status: string;
  progress: number;
  errorMessage: string | null;
  /** Oldest first. */
  generations: GenerationView[];
}

const GENERATION_FIELDS = { id: true, prompt: true, status: true, imageUrls: true, errorMessage: true } as const;

/** A generation as the page shows it: its image URLs are `jsonb` strings in the row. */
export function generationView(generation: Pick<Generation, keyof typeof GENERATION_FIELDS>): GenerationView {
  return { ...generation, imageUrls: generation.imageUrls.filter((url): url is string => typeof url === 'string') };
}

/** The user's models and their generations as the page shows them: what the browser re-reads on every (re)connection. */
export async function listModels(userId: string): Promise<ModelView[]> {
  const models = await prisma.aIModel.findMany({
    where: { userId, status: { not: 'DELETED' } },
    select: {
      id: true,
      name: true,
      status: true,
      progress: true,
      errorMessage: true,
      generations: { select: GENERATION_FIELDS, orderBy: [{ createdAt: 'asc' }, { id: 'asc' }] },
    },
    orderBy: { createdAt: 'asc' },
  });
  return models.map((model) => ({ ...model, generations: model.generations.map(generationView) }));
}
