import { defineConfig } from 'prisma/config';

// Prisma 7 reads the connection URL here, not in schema.prisma. `validate` and `generate` never
// connect, so a placeholder lets them run without a database (npm test, CI).
export default defineConfig({
  schema: 'prisma/schema.prisma',
  datasource: {
    url: process.env.DATABASE_URL ?? 'postgresql://localhost:5432/placeholder',
  },
});
