#!/usr/bin/env node
// The compiled sources in one file (scripts/bundle.ts): `npm ci` builds it
// (the `prepare` script); after changing src/, run `npm run build`.
await import("../dist/adapters/node/cli/nanocdn.mjs");
