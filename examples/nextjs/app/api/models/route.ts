import { NextResponse } from 'next/server';
import { currentUserId } from '@/lib/auth';
import { listModels } from '@/lib/models';

/** The signed-in user's models, read again by the page on every (re)connection of its event stream. */
export async function GET() {
  const userId = await currentUserId();
  if (!userId) return NextResponse.json({ error: 'unauthorized' }, { status: 401 });
  return NextResponse.json(await listModels(userId), { headers: { 'cache-control': 'no-store' } });
}
