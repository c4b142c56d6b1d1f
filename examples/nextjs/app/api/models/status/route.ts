import { NextResponse, type NextRequest } from 'next/server';
import { currentUserId } from '@/lib/auth';
import { prisma } from '@/lib/db';

/** Ids a poll may name at once: a page's in-flight models, with room to spare. */
const MAX_IDS = 100;

/**
 * The status of the signed-in user's models named by `?ids=a,b,c`: what the page polls every 10 s
 * while one of them is in flight and its event stream is down. Another user's ids answer nothing.
 */
export async function GET(request: NextRequest) {
  const userId = await currentUserId();
  if (!userId) return NextResponse.json({ error: 'unauthorized' }, { status: 401 });
  const ids = [...new Set((request.nextUrl.searchParams.get('ids') ?? '').split(',').filter(Boolean))];
  if (ids.length === 0 || ids.length > MAX_IDS) return NextResponse.json({ error: `ids: name 1 to ${MAX_IDS} model ids` }, { status: 400 });
  const models = await prisma.aIModel.findMany({
    where: { userId, id: { in: ids } },
    select: { id: true, status: true, progress: true, errorMessage: true },
  });
  return NextResponse.json(models, { headers: { 'cache-control': 'no-store' } });
}
