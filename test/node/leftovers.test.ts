import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startNodeProcess } from "../helpers/node-process.ts";
import { killLeftovers, processesNaming } from "../helpers/processes.ts";

// The suite's teardown (test/global-setup.ts) relies on this to end what a timed-out test left running.
describe("killing what the tests left running in a folder", () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  it("ends a node and its serving processes, and leaves processes of other folders alone", async () => {
    const dir = await mkdtemp(join(tmpdir(), "leftover-"));
    const other = await mkdtemp(join(tmpdir(), "leftover-"));
    cleanups.push(
      () => rm(dir, { recursive: true, force: true }),
      () => rm(other, { recursive: true, force: true }),
    );
    const node = await startNodeProcess({ dir, config: { workers: 2 } });
    cleanups.push(() => node.stop("SIGKILL"));
    const bystander = spawn("bash", ["-c", "sleep 60; exit", join(other, "nanocdn.toml")], { stdio: "ignore" });
    cleanups.push(() => bystander.kill("SIGKILL"));
    // The primary and its two serving processes.
    expect(processesNaming(dir).length).toBeGreaterThanOrEqual(3);

    const killed = await killLeftovers(dir);

    expect(killed.map(({ pid }) => pid)).toContain(node.pid);
    expect(await node.exited).toBe("SIGKILL");
    expect(processesNaming(dir)).toEqual([]);
    expect(bystander.exitCode).toBeNull();
    expect(bystander.signalCode).toBeNull();
    expect(processesNaming(other).map(({ pid }) => pid)).toEqual([bystander.pid]);
  });
});
