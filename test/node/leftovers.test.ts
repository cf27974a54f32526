import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { eventually } from "../helpers/eventually.ts";
import { startNodeProcess } from "../helpers/node-process.ts";
import { killLeftovers, processesNaming } from "../helpers/processes.ts";

// The suite's teardown (test/global-setup.ts) relies on this to end what a timed-out test left running.
describe("killing what the tests left running in a folder", () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  it("ends a node and its serving processes, and what runs inside the folder, and leaves other folders' processes alone", async () => {
    const dir = await mkdtemp(join(tmpdir(), "leftover-"));
    const other = await mkdtemp(join(tmpdir(), "leftover-"));
    cleanups.push(
      () => rm(dir, { recursive: true, force: true }),
      () => rm(other, { recursive: true, force: true }),
    );
    const idle = (args: string[], cwd: string) => {
      const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1e9)", ...args], { cwd, stdio: "ignore" });
      cleanups.push(() => child.kill("SIGKILL"));
      return child;
    };
    const node = await startNodeProcess({ dir, config: { workers: 2 } });
    cleanups.push(() => node.stop("SIGKILL"));
    // Named nowhere on its command line (as `nanocdn serve` run with cwd set to the folder).
    const within = idle([], dir);
    const bystander = idle([join(other, "nanocdn.toml")], other);
    // The primary and its two serving processes.
    await eventually(async () => expect(processesNaming(dir).length).toBeGreaterThanOrEqual(3));

    const killed = (await killLeftovers(dir)).map(({ pid }) => pid);

    expect(killed).toEqual(expect.arrayContaining([node.pid, within.pid]));
    expect(await node.exited).toBe("SIGKILL");
    expect(processesNaming(dir)).toEqual([]);
    await eventually(async () => expect(within.signalCode).toBe("SIGKILL"));
    expect(bystander.exitCode).toBeNull();
    expect(bystander.signalCode).toBeNull();
    expect(processesNaming(other).map(({ pid }) => pid)).toEqual([bystander.pid]);
  });
});
