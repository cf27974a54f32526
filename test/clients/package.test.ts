import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PASSWORD, USER } from "../helpers/credentials.ts";
import { type NodeProcess, startNodeProcess } from "../helpers/node-process.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const run = promisify(execFile);

describe("the published client (nanocdn/client)", () => {
  let node: NodeProcess;
  beforeAll(async () => {
    // dist/ is what `npm ci` builds (prepare); the test run's global set-up builds it again.
    node = await startNodeProcess();
  }, 60_000);
  afterAll(async () => {
    await node?.stop();
  });

  it("imports by package name in plain Node, without a TypeScript loader, and works", async () => {
    const script = `
      import { NanoCdnClient } from "nanocdn/client";
      const cdn = new NanoCdnClient({ nodes: [process.env.NODE_URL], credentials: { user: process.env.CDN_USER, password: process.env.CDN_PASSWORD } });
      const { name } = await cdn.put("packaged.txt", "from plain node", { namespace: "pub" });
      console.log(name, await (await cdn.get(name)).text());
    `;
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], {
      cwd: ROOT,
      env: { ...process.env, NODE_OPTIONS: "", NODE_URL: node.url, CDN_USER: USER, CDN_PASSWORD: PASSWORD },
    });
    expect(stdout.trim()).toBe("/1/pub/packaged.txt from plain node");
  });
});
