import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../helpers/ports.ts";
import { consoleBlock, expectedOutputs, runSteps } from "../helpers/readme.ts";

const ROOT = resolve(import.meta.dirname, "../..");

describe("npm run dev:worker", () => {
  let child: ChildProcess;
  let output = "";
  let port: number;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "nanocdn-dev-worker-"));
    port = await freePort();
    // Its own process group, so that the whole tree (npm, wrangler, workerd) can be stopped.
    child = spawn("npm", ["run", "dev:worker", "--", "--port", String(port)], {
      cwd: ROOT,
      detached: true,
      env: { ...process.env, NANOCDN_DEV_DIR: dir },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout!.on("data", (c) => (output += c));
    child.stderr!.on("data", (c) => (output += c));
    for (let i = 0; i < 600 && !output.includes("Ready on"); i++) await new Promise((r) => setTimeout(r, 100));
    if (!output.includes("Ready on")) throw new Error(`wrangler dev did not start:\n${output}`);
  }, 90_000);

  afterAll(async () => {
    if (child?.pid) {
      const exited = new Promise((r) => child.on("exit", r));
      process.kill(-child.pid, "SIGTERM");
      await exited;
    }
  });

  it("starts on loopback with telemetry off and a first user whose password it keeps out of its output, a pipe here", () => {
    expect(output).toContain(`Ready on http://127.0.0.1:${port}`);
    expect(output).toContain("password: in ");
    expect(output).toContain(join(".wrangler", "initial-credentials"));
    expect(output).not.toMatch(/metrics|telemetry/i);
  });

  it("answers the README walk-through as the README says", async () => {
    const steps = (await consoleBlock("## Walk-through")).filter((s) => !s.command.startsWith("cat data/files"));
    const outputs = runSteps(steps, dir, (c) =>
      c.replaceAll("127.0.0.1:8080", `127.0.0.1:${port}`).replace("data/initial-credentials", ".wrangler/initial-credentials"),
    );
    expect(outputs).toEqual(expectedOutputs(steps));
  });
});
