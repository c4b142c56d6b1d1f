import { fileURLToPath } from 'node:url';
import type { NextConfig } from 'next';

const config: NextConfig = {
  // Next's announced next default; the example builds either way (NEXT_CACHE_COMPONENTS=1 to try it).
  cacheComponents: process.env.NEXT_CACHE_COMPONENTS === '1',
  // Next pairs the two in its next major release.
  partialPrefetching: process.env.NEXT_CACHE_COMPONENTS === '1',
  // A second build (with the other setting) can go to its own folder without touching the first.
  distDir: process.env.NEXT_DIST_DIR ?? '.next',
  // In this repo the library is linked from ../.. (`file:../..`): let the bundler read it there.
  turbopack: { root: fileURLToPath(new URL('../..', import.meta.url)) },
  outputFileTracingRoot: fileURLToPath(new URL('../..', import.meta.url)),
  serverExternalPackages: ['pg', '@prisma/client', '@prisma/adapter-pg', 'astria-reconciler'],
};

export default config;
