# syntax=docker/dockerfile:1
# Build: compile the runtime (what `npm pack` ships) with dev dependencies, then keep only production
# ones, plus ioredis: an optional peer dependency of the library that BROADCAST=redis needs.
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.package.json ./
COPY src ./src
# ioredis (the version the lockfile pins) is installed apart, with its dependencies nested under it:
# as a dev dependency of the repository, `npm prune --omit=dev` removes it from the tree.
RUN npm run prepack \
 && ioredis="$(node -p "require('./package-lock.json').packages['node_modules/ioredis'].version")" \
 && npm prune --omit=dev --ignore-scripts \
 && npm install --prefix /tmp/ioredis --no-save --no-package-lock --ignore-scripts --no-audit --no-fund "ioredis@${ioredis}" \
 && mv /tmp/ioredis/node_modules/ioredis node_modules/ioredis \
 && mv /tmp/ioredis/node_modules node_modules/ioredis/node_modules

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
