// Stand-in for the app's session helper (Auth.js v5 exports `auth()` from `@/auth`). Use yours.
declare module '@/auth' {
  export interface Session {
    user?: { id?: string | null; email?: string | null; name?: string | null };
  }
  export function auth(): Promise<Session | null>;
}
