#!/usr/bin/env node
// Runs the TypeScript sources directly: no build step between `npm ci` and a
// working `nanocdn` command.
import { register } from "tsx/esm/api";

register();
await import("../src/adapters/node/cli.ts");
