/**
 * What keeps the repository's parts agreeing with each other: the routes the deploy manifests send the
 * app's traffic to exist in the example app, and the source explains itself in its own words.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const root = new URL('../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');

function filesUnder(dir: string, pattern: RegExp): string[] {
  return readdirSync(new URL(dir, root), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && pattern.test(entry.name))
    .map((entry) => `${entry.parentPath.slice(new URL(root).pathname.length)}/${entry.name}`.replace(/^\/+/, ''));
}

describe('deploy/ and the example app', () => {
  it("every app URL in deploy/ (a path under /api/) is a route of examples/nextjs", () => {
    const urls = filesUnder('deploy/', /\.(ya?ml|json)$/).flatMap((file) =>
      [...read(file).matchAll(/https?:\/\/[^\s/"']+(\/api\/[^\s?#"']*)/g)].map(([url, path]) => ({ file, url, path: path! })),
    );
    expect(urls.length).toBeGreaterThan(0);
    const missing = urls.filter(({ path }) => !existsSync(new URL(`examples/nextjs/app${path.replace(/\/$/, '')}/route.ts`, root)));
    expect(missing).toEqual([]);
  });

  it("the example README's tune callback URL carries the model id (a prompt's applies by the prompt id)", () => {
    const callbacks = read('examples/nextjs/README.md')
      .split('\n')
      .flatMap((line) => [...line.matchAll(/\/api\/webhooks\/astria\?[^\s`]*/g)].map(([url]) => ({ url, line })));
    expect(callbacks.length).toBeGreaterThan(0);
    expect(callbacks.filter(({ url, line }) => !url.includes('&model=') && !/prompt/i.test(line))).toEqual([]);
  });
});

describe('source comments', () => {
  it('cite no document outside the repository (SPEC.md) and no issue numbers', () => {
    const citing = filesUnder('src/', /\.ts$/).flatMap((file) =>
      read(file)
        .split('\n')
        .map((line, index) => ({ where: `${file}:${index + 1}`, line }))
        .filter(({ line }) => /SPEC\.md|\bissues? #\d|(^|[\s(])#\d+\b/.test(line)),
    );
    expect(citing).toEqual([]);
  });
});
