import { prisma } from './db';

export interface ModelView {
  id: string;
  name: string;
  status: string;
  progress: number;
  errorMessage: string | null;
}

/** The user's models as the page shows them: what the browser re-reads on every (re)connection. */
export async function listModels(userId: string): Promise<ModelView[]> {
  return prisma.aIModel.findMany({
    where: { userId, status: { not: 'DELETED' } },
    select: { id: true, name: true, status: true, progress: true, errorMessage: true },
    orderBy: { createdAt: 'asc' },
  });
}
