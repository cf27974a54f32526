#!/usr/bin/env node
// The compiled sources: `npm ci` builds them (the `prepare` script); after
// changing src/, run `npm run build`.
await import("../dist/adapters/node/cli/main.js");
