import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually } from "../helpers/eventually.ts";
import { BIN } from "../helpers/node-process.ts";
import { consoleBlock, expectedOutputs, runSteps } from "../helpers/readme.ts";

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/**
 * Consecutive free ports, as `nanocdn cluster --base-port` needs: below the
 * range the other tests pick from (see ports.ts), and below Linux's
 * ephemeral range, whose ports outgoing connections take meanwhile.
 */
async function freePortRun(length: number): Promise<number> {
  for (;;) {
    const base = 10_000 + Math.floor(Math.random() * 9_000);
    const free = await Promise.all(Array.from({ length }, (_, i) => portFree(base + i)));
    if (free.every(Boolean)) return base;
  }
}

describe("README cluster walk-through", () => {
  let child: ChildProcess;
  let cwd: string;
  let base: number;
  let output = "";

  beforeAll(async () => {
    cwd = await mkdtemp(join(tmpdir(), "nanocdn-walkthrough-"));
    base = await freePortRun(3);
    child = spawn(process.execPath, [BIN, "cluster", "--nodes", "3", "--dir", "./demo", "--base-port", String(base)], {
      cwd,
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout!.on("data", (c) => (output += c));
    child.stderr!.on("data", (c) => (output += c));
    // Ready, as a person reading the output would find it a few seconds later:
    // every node has its own files complete and sees both peers up.
    await eventually(async () => {
      const credentials = (await readFile(join(cwd, "demo", "initial-credentials"), "utf8")).trim();
      const authorization = `Basic ${Buffer.from(credentials).toString("base64")}`;
      for (let i = 0; i < 3; i++) {
        const status = await (await fetch(`http://127.0.0.1:${base + i}/status`, { headers: { Authorization: authorization } })).json();
        expect(status.ownFiles).toBe("complete");
        expect(status.peers.map((p: { up: boolean }) => p.up)).toEqual([true, true]);
      }
    }, 30_000);
  }, 60_000);

  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.on("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
  });

  it("says where the first user's password is, without printing it into a log, and writes each node's pid", async () => {
    const copy = join(cwd, "demo", "initial-credentials");
    const password = (await readFile(copy, "utf8")).trim().split(":")[1]!;
    expect(output).not.toContain(password);
    expect(output).toContain(`password: in ${copy}`);
    expect(Number(await readFile(join(cwd, "demo", "node1", "pid"), "utf8"))).toBeGreaterThan(0);
  });

  it("gives exactly what the README shows, a read surviving its owner's death included", async () => {
    const steps = await consoleBlock("## A cluster");
    expect(steps.some((s) => s.command.startsWith("kill -9"))).toBe(true);
    const port = (n: number) => base + n - 1;
    // The README's pause for the second copy (the 201 waited for one of nodes 2 and 3), as a wait for node 2's own: a loaded machine may take longer.
    const untilNode2Holds = `for i in $(seq 150); do [ "$(curl -s -o /dev/null -w '%header{x-nanocdn-served-by}' http://127.0.0.1:${port(2)}/1/pub/ticket-42.txt)" = 2 ] && break; sleep 0.1; done`;
    const outputs = runSteps(steps, cwd, (c) =>
      c === "sleep 1" ? untilNode2Holds : c.replace(/127\.0\.0\.1:808([1-3])/g, (_, n: string) => `127.0.0.1:${port(Number(n))}`),
    );
    expect(outputs).toEqual(expectedOutputs(steps));
    await eventually(async () => expect(output).toContain("node 1 exited (SIGKILL); the others go on"));
  });
});
