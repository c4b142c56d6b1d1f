# syntax=docker/dockerfile:1
# Build: compile TypeScript with dev dependencies, then keep only production ones.
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bench ./bench
RUN npm run build && npm prune --omit=dev --ignore-scripts

# Run: production dependencies and compiled code only, as an unprivileged user.
FROM node:22-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build --chown=root:root /app/package.json ./
COPY --from=build --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist/src ./dist/src
COPY --chown=root:root LICENSE ./
# Numeric, so Kubernetes runAsNonRoot can verify it (1000 is the image's `node` user).
USER 1000:1000
EXPOSE 9464
# node runs as PID 1 on purpose: the reconciler installs its own SIGTERM/SIGINT handlers (PID 1 gets no
# default ones) and starts no child processes, so there are no zombies to reap and no init is needed.
# No secrets are baked in: DATABASE_URL, ASTRIA_API_KEY and WEBHOOK_SECRET come from the environment.
ENTRYPOINT ["node", "dist/src/cli/main.js"]
