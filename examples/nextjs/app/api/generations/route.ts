import { NextResponse, type NextRequest } from 'next/server';
import { AstriaRequestError, createAstriaPrompt, GENERATION_CREDITS } from '@/lib/astria';
import { currentUserId } from '@/lib/auth';
import { prisma } from '@/lib/db';
import { generationView } from '@/lib/models';

const MAX_PROMPT_CHARS = 1_000;

/**
 * Asks Astria for images of one of the signed-in user's `READY` models: `{ modelId, prompt }`. The
 * credits are taken first (402 without enough), Astria's prompt is created with this app's webhook as
 * its callback (502 when Astria refuses: the credits go back), then the `PROCESSING` row with the
 * prompt's id (`jobId`) is inserted. From there on its status changes only through astria-reconciler:
 * the callback on the webhook route, or the sidecar when the callback is lost. A callback that came
 * before the row (Astria takes seconds at least) answers 202 and the sidecar applies the prompt.
 */
export async function POST(request: NextRequest) {
  const userId = await currentUserId();
  if (!userId) return NextResponse.json({ error: 'unauthorized' }, { status: 401 });
  const body = (await request.json().catch(() => null)) as { modelId?: unknown; prompt?: unknown } | null;
  const text = typeof body?.prompt === 'string' ? body.prompt.trim() : '';
  if (typeof body?.modelId !== 'string' || text === '' || text.length > MAX_PROMPT_CHARS) {
    return NextResponse.json({ error: `name a modelId and a prompt of 1 to ${MAX_PROMPT_CHARS} characters` }, { status: 400 });
  }
  const model = await prisma.aIModel.findFirst({ where: { id: body.modelId, userId, status: 'READY', aiProvider: 'astria', trainingJobId: { not: null } } });
  if (!model?.trainingJobId) return NextResponse.json({ error: 'no such ready model' }, { status: 404 });
  const unset = ['WEBHOOK_SECRET', 'ASTRIA_API_KEY'].find((name) => !process.env[name]);
  if (unset) return NextResponse.json({ error: `${unset} is not set` }, { status: 500 });

  const charged = await prisma.user.updateMany({ where: { id: userId, credits: { gte: GENERATION_CREDITS } }, data: { credits: { decrement: GENERATION_CREDITS } } });
  if (charged.count === 0) return NextResponse.json({ error: `a generation costs ${GENERATION_CREDITS} credits` }, { status: 402 });
  // APP_URL: this app's public address, which Astria calls back (the request's own origin otherwise).
  const callback = new URL('/api/webhooks/astria', process.env.APP_URL ?? request.nextUrl.origin);
  callback.searchParams.set('secret', process.env.WEBHOOK_SECRET!);
  let promptId: number;
  try {
    promptId = await createAstriaPrompt(model.trainingJobId, text, callback.toString());
  } catch (error) {
    await prisma.user.updateMany({ where: { id: userId }, data: { credits: { increment: GENERATION_CREDITS } } });
    if (error instanceof AstriaRequestError) return NextResponse.json({ error: error.message }, { status: 502 });
    throw error;
  }
  const generation = await prisma.generation.create({
    data: { userId, modelId: model.id, prompt: text, aiProvider: 'astria', jobId: String(promptId), status: 'PROCESSING', creditsUsed: GENERATION_CREDITS },
  });
  return NextResponse.json(generationView(generation), { status: 201 });
}
