import { cookies } from 'next/headers';

/**
 * The signed-in user's id: a stand-in for the app's own auth (NextAuth's `auth()`, Clerk, ...). With
 * `DEMO_AUTH=1` the visitor is whoever the `demo_user` cookie names; otherwise nobody is signed in.
 */
export async function currentUserId(): Promise<string | null> {
  if (process.env.DEMO_AUTH !== '1') return null;
  return (await cookies()).get('demo_user')?.value || null;
}
