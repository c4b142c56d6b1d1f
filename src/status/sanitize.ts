/**
 * Text from Astria or from the app's own row, made safe to write before it reaches PostgreSQL: a NUL
 * is refused by every text column (`invalid byte sequence`), a lone surrogate by jsonb, and a NOTIFY
 * payload stops at 8000 bytes. One such string must cost nothing, least of all the whole pass.
 */

/**
 * PostgreSQL's NOTIFY payload limit is 8000 bytes; one byte of room for its terminator. The bounds of
 * `event.ts` are sized so that the largest event stays within it (a unit test holds them to it).
 */
export const MAX_NOTIFY_PAYLOAD_BYTES = 7_999;

/**
 * `text` without NUL characters and lone surrogates (each becomes U+FFFD), cut on a code-point
 * boundary so that its JSON string form (quotes aside) is at most `maxJsonBytes` UTF-8 bytes; a cut
 * text ends in `…`.
 */
export function safeText(text: string, maxJsonBytes: number): string {
  const ELLIPSIS = '…';
  const ellipsisBytes = 3;
  let out = '';
  let bytes = 0;
  // Where the text stood when `…` still fitted after it: the cut point if the rest does not fit.
  let cutAt = 0;
  for (const char of text) {
    if (char === '\u0000') continue;
    const safe = isLoneSurrogate(char) ? '\uFFFD' : char;
    const size = jsonBytes(safe);
    if (bytes + size > maxJsonBytes) return out.slice(0, cutAt) + ELLIPSIS;
    out += safe;
    bytes += size;
    if (bytes + ellipsisBytes <= maxJsonBytes) cutAt = out.length;
  }
  return out;
}

/** `safeText` for nullable columns. */
export function safeNullableText(text: string | null, maxJsonBytes: number): string | null {
  return text === null ? null : safeText(text, maxJsonBytes);
}

function isLoneSurrogate(char: string): boolean {
  // `for…of` yields a paired surrogate as one two-unit string; a lone one comes alone.
  const code = char.charCodeAt(0);
  return char.length === 1 && code >= 0xd800 && code <= 0xdfff;
}

/** UTF-8 bytes of one code point as JSON.stringify writes it inside a string. */
function jsonBytes(char: string): number {
  const code = char.codePointAt(0)!;
  if (char === '"' || char === '\\') return 2;
  if (code < 0x20) return '\b\f\n\r\t'.includes(char) ? 2 : 6;
  if (code < 0x80) return 1;
  if (code < 0x800) return 2;
  return code < 0x10000 ? 3 : 4;
}
