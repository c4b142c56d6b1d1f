import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';

function capture(): { stream: Writable; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString();
      done();
    },
  });
  return { stream, text: () => text };
}

describe('createLogger', () => {
  it("redacts the rejected text Node's URL parser puts on its error (a DATABASE_URL with its password)", () => {
    let error: unknown;
    try {
      new URL('postgresql://app:pa/ss@db.internal:5432/app');
    } catch (caught) {
      error = caught;
    }
    const out = capture();
    const log = createLogger('info', out.stream);
    log.error({ err: error }, 'failed');
    log.error({ err: { cause: error } }, 'failed again');
    expect(out.text()).toContain('Invalid URL');
    expect(out.text()).not.toContain('pa/ss');
  });
});
