/**
 * The README is a front door to docs/: this keeps the pages reachable and what they name real. Every
 * relative link lands on a file (and heading) that exists, every page is linked from the README, every
 * `astria-reconciler …` command shown is one the CLI accepts, the configuration page lists exactly the
 * variables the configuration reads, and the metrics and library exports named are the ones the code has.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseCommand, UsageError } from '../../src/cli/args.js';
import * as library from '../../src/index.js';
import { createMetrics } from '../../src/metrics.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const read = (path: string) => readFileSync(join(root, path), 'utf8');

/** README.md and the pages directly under docs/ (drafts in subfolders are not pages yet). */
const DOC_PAGES = readdirSync(join(root, 'docs'), { withFileTypes: true })
  .filter((entry) => entry.isFile() && entry.name.endsWith('.md'))
  .map((entry) => `docs/${entry.name}`)
  .sort();
const MARKDOWN = ['README.md', ...DOC_PAGES];

interface Markdown {
  /** Prose, with fenced code blocks removed (links and headings live here). */
  prose: string;
  /** The lines of fenced code blocks. */
  codeLines: string[];
}

function splitMarkdown(text: string): Markdown {
  const prose: string[] = [];
  const codeLines: string[] = [];
  let fenced = false;
  for (const line of text.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    else (fenced ? codeLines : prose).push(line);
  }
  return { prose: prose.join('\n'), codeLines };
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, each space a hyphen; repeats get -1, -2, … */
function headingAnchors(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of splitMarkdown(text).prose.split('\n')) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const base = heading[1]!
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}

/** Link targets in the prose (not in code), without the external ones. */
function relativeLinks(text: string): string[] {
  const { prose } = splitMarkdown(text);
  const withoutCode = prose.replace(/`[^`\n]*`/g, '');
  return [...withoutCode.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)]
    .map((match) => match[1]!)
    .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

/** Why the link from `page` (a path under `base`) does not resolve, or null when it does. */
function linkProblem(base: string, page: string, target: string, readPage: (absolutePath: string) => string): string | null {
  const [pathPart, anchor] = target.split('#', 2) as [string, string | undefined];
  const file = pathPart === '' ? join(base, page) : resolve(join(base, dirname(page)), decodeURIComponent(pathPart));
  if (!existsSync(file)) return `${page}: ${target} names a missing file`;
  if (anchor === undefined || !file.endsWith('.md')) return null;
  return headingAnchors(readPage(file)).has(anchor) ? null : `${page}: ${target} names a missing heading`;
}

/** The `astria-reconciler …` command lines shown: in code blocks, and as inline code. */
function cliInvocations(text: string): string[][] {
  const { prose, codeLines } = splitMarkdown(text);
  const inline = [...prose.matchAll(/`([^`\n]+)`/g)].map((match) => match[1]!);
  const lines = [...codeLines.map((line) => line.replace(/^\s*\$\s+/, '').trim()), ...inline];
  return lines
    .filter((line) => /^astria-reconciler(\s|$)/.test(line))
    .map((line) =>
      line
        // Up to a comment or the next shell command; optional parts written [--json] are still flags.
        .split(/\s+(?:#|\||&&|;|>)/)[0]!
        .split(/\s+/)
        .slice(1)
        .map((token) => token.replace(/^\[|\]$/g, ''))
        .filter(Boolean),
    );
}

/** Flags written alone as inline code (`--dry-run`, `--once --model-id <id>`). */
function inlineFlags(text: string): string[] {
  const spans = [...splitMarkdown(text).prose.matchAll(/`(--[^`\n]+)`/g)].map((match) => match[1]!);
  return spans.flatMap((span) => span.match(/(?<!\S)--[a-z][a-z0-9-]*/g) ?? []);
}

function usageProblem(argv: string[]): string | null {
  try {
    parseCommand(argv);
    return null;
  } catch (error) {
    if (error instanceof UsageError) return error.message;
    throw error;
  }
}

/** The variables `src/config.ts` reads: the keys of its environment schema. */
function configVariables(): string[] {
  const source = read('src/config.ts');
  const start = source.indexOf('const envSchema = z');
  const end = source.indexOf('\n  });', start);
  expect(start, 'src/config.ts declares envSchema').toBeGreaterThan(-1);
  return [...source.slice(start, end).matchAll(/^ {4}([A-Z][A-Z0-9_]*):/gm)].map((match) => match[1]!).sort();
}

/** The variables the configuration page's table lists (its first column; a row may list several). */
function documentedVariables(): string[] {
  const rows = read('docs/configuration.md')
    .split('\n')
    .filter((line) => line.startsWith('| `'));
  return rows.flatMap((row) => [...row.split('|')[1]!.matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map((match) => match[1]!)).sort();
}

describe('the docs checks themselves', () => {
  const page = (text: string) => () => text;
  it('derive heading anchors as GitHub does', () => {
    const anchors = headingAnchors('# A\n## What was recovered: `report`\n```\n# not a heading\n```\n## HTTP endpoints (one port)\n## A\n');
    expect([...anchors]).toEqual(['a', 'what-was-recovered-report', 'http-endpoints-one-port', 'a-1']);
  });
  it('report a link to a missing file or heading, and accept existing ones', () => {
    const readAbsolute = (file: string) => readFileSync(file, 'utf8');
    expect(linkProblem(root, 'README.md', 'docs/no-such-page.md', readAbsolute)).toMatch(/missing file/);
    expect(linkProblem(root, 'README.md', '#no-such-heading', page('# Title\n'))).toMatch(/missing heading/);
    expect(linkProblem(root, 'README.md', 'package.json', readAbsolute)).toBeNull();
    expect(linkProblem(root, 'docs/x.md', '../README.md#title', page('# Title\n'))).toBeNull();
  });
  it('find links in prose only, and commands in code and inline code', () => {
    const text = 'See [a](docs/a.md), [b](https://x.test) and `[c](no.md)`.\n```sh\nastria-reconciler --once --json   # one pass\nnpm install astria-reconciler pg\n```\nRun `astria-reconciler report [--json]` or `--stuck-after 0s`.\n';
    expect(relativeLinks(text)).toEqual(['docs/a.md']);
    expect(cliInvocations(text)).toEqual([['--once', '--json'], ['report', '--json']]);
    expect(inlineFlags(text)).toEqual(['--stuck-after']);
    expect(usageProblem(['--once', '--no-such-flag'])).toMatch(/unknown option/);
  });
});

describe('the documentation', () => {
  it('has pages, each linked from the README', () => {
    expect(DOC_PAGES.length).toBeGreaterThan(0);
    const linked = new Set(relativeLinks(read('README.md')).map((target) => relative(root, resolve(root, target.split('#')[0]!))));
    expect(DOC_PAGES.filter((page) => !linked.has(page))).toEqual([]);
  });

  it('links only to files and headings that exist', () => {
    const problems = MARKDOWN.flatMap((page) =>
      relativeLinks(read(page)).map((target) => linkProblem(root, page, target, (file) => readFileSync(file, 'utf8'))),
    );
    expect(problems.filter(Boolean)).toEqual([]);
  });

  it('shows only astria-reconciler commands the CLI accepts', () => {
    const commands = MARKDOWN.flatMap((page) => cliInvocations(read(page)).map((argv) => ({ page, argv })));
    expect(commands.length).toBeGreaterThan(5);
    const refused = commands
      .map(({ page, argv }) => ({ page, command: `astria-reconciler ${argv.join(' ')}`, problem: usageProblem(argv) }))
      .filter(({ problem }) => problem !== null);
    expect(refused).toEqual([]);
  });

  it('names only flags the CLI knows', () => {
    const flags = [...new Set(MARKDOWN.flatMap((page) => inlineFlags(read(page))))];
    expect(flags.length).toBeGreaterThan(3);
    // Alone, a known flag may lack its value or its subcommand, but parseArgs knows its name.
    expect(flags.filter((flag) => usageProblem([flag])?.startsWith('unknown option'))).toEqual([]);
  });

  it('lists exactly the environment variables the configuration reads', () => {
    const variables = configVariables();
    expect(variables.length).toBeGreaterThan(10);
    expect(documentedVariables()).toEqual(variables);
  });

  it("names only the configuration's variables among ours (RECONCILER_*, ASTRIA_*, BROADCAST_*)", () => {
    const known = new Set(configVariables());
    const named = MARKDOWN.flatMap((page) => read(page).match(/\b(?:RECONCILER|ASTRIA|BROADCAST)_[A-Z0-9_]*[A-Z0-9]\b/g) ?? []);
    expect([...new Set(named)].filter((name) => !known.has(name))).toEqual([]);
  });

  it('lists every metric the reconciler exports, and names no other', async () => {
    const { registry } = createMetrics();
    const exported = (await registry.getMetricsAsJSON()).map((metric) => metric.name).sort();
    const operations = read('docs/operations.md');
    expect(exported.filter((name) => !operations.includes(`\`${name}`))).toEqual([]);
    const named = new Set(MARKDOWN.flatMap((page) => read(page).match(/\bastria_reconciler_[a-z_]*[a-z]\b/g) ?? []));
    const series = new Set(exported.flatMap((name) => [name, `${name}_bucket`, `${name}_sum`, `${name}_count`]));
    expect([...named].filter((name) => !series.has(name))).toEqual([]);
  });

  it("shows the example app's webhook route in the README's quick start (the example is type-checked and run)", () => {
    const codeOf = (text: string) =>
      text
        .split('\n')
        .map((line) => line.replace(/\s\/\/ .*$/, '').trim())
        .filter((line) => line !== '' && !line.startsWith('//') && !line.startsWith('*') && !line.startsWith('/**'));
    const snippet = /```ts\n([\s\S]*?)```/.exec(read('README.md'))?.[1];
    expect(snippet, 'the README shows the webhook route').toBeDefined();
    const route = new Set(codeOf(read('examples/nextjs/app/api/webhooks/astria/route.ts')));
    expect(codeOf(snippet!).filter((line) => !route.has(line))).toEqual([]);
  });

  it('lists every export of the library on the library page', () => {
    const page = read('docs/library.md');
    expect(Object.keys(library).filter((name) => !page.includes(`\`${name}`))).toEqual([]);
  });
});
