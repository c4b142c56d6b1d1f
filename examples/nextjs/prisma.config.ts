import { defineConfig } from 'prisma/config';

// Prisma 7 reads the URL here. `prisma generate` (run by `npm run build`) never connects: a placeholder
// lets the build run without a database.
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://localhost:5432/placeholder' },
});
