// Stand-in for the few `next/server` types the example uses, so it type-checks without installing
// Next.js. In a real app these come from `next` itself: delete this file.
declare module 'next/server' {
  export class NextRequest extends Request {
    readonly nextUrl: URL;
  }
  export class NextResponse<Body = unknown> extends Response {
    static json<JsonBody>(body: JsonBody, init?: ResponseInit): NextResponse<JsonBody>;
  }
}
