import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PASSWORD, USER } from "../helpers/credentials.ts";
import { type NodeProcess, startNodeProcess } from "../helpers/node-process.ts";
import { freePort } from "../helpers/ports.ts";

// The built client package (clients/typescript/dist) on each runtime it is meant for; workerd has
// its own test (test/workerd/client.test.ts). Bun and Deno are the project's devDependencies.
const ROOT = resolve(import.meta.dirname, "../..");
const SCRIPT = resolve(import.meta.dirname, "runtimes/round-trip.mjs");
const run = promisify(execFile);
const vector = (
  JSON.parse(readFileSync(join(ROOT, "clients/signing-vectors.json"), "utf8")) as { urls: { path: string; key: string; expires: number; signed: string }[] }
).urls[0]!;

const RUNTIMES: Record<string, (script: string) => [string, string[]]> = {
  node: (script) => [process.execPath, [script]],
  bun: (script) => [join(ROOT, "node_modules/.bin/bun"), [script]],
  deno: (script) => [join(ROOT, "node_modules/.bin/deno"), ["run", "--allow-net", "--allow-read", "--allow-env", script]],
};

describe("the client package on Node, Bun and Deno", () => {
  let node: NodeProcess;
  let denoDir: string;
  beforeAll(async () => {
    [node, denoDir] = await Promise.all([startNodeProcess(), mkdtemp(join(tmpdir(), "nanocdn-deno-"))]);
  }, 60_000);
  afterAll(async () => {
    await node?.stop();
    if (denoDir) await rm(denoDir, { recursive: true, force: true });
  });

  for (const [runtime, command] of Object.entries(RUNTIMES)) {
    it(`uploads past a refused node, streams, reads, deletes and signs on ${runtime}`, async () => {
      const dead = `http://127.0.0.1:${await freePort()}`;
      const [file, args] = command(SCRIPT);
      const { stdout } = await run(file, args, {
        env: {
          ...process.env,
          NODE_OPTIONS: "",
          RUNTIME: runtime,
          DEAD_URL: dead,
          NODE_URL: node.url,
          CDN_USER: USER,
          CDN_PASSWORD: PASSWORD,
          VECTOR: JSON.stringify(vector),
          DENO_DIR: denoDir,
          DENO_NO_UPDATE_CHECK: "1",
        },
      });
      expect(JSON.parse(stdout)).toEqual({
        name: `/1/pub/runtimes/${runtime}.txt`,
        tried: [dead, node.url],
        text: `hello from ${runtime}`,
        priv: "streamed in parts",
        head: 17,
        deleted: [true, true],
        exists: false,
        signed: vector.signed,
      });
    });
  }
});
