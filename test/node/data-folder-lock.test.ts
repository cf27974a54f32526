import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";

const MODULE = pathToFileURL(resolve(import.meta.dirname, "../../dist/adapters/node/process/data-folder-lock.js")).href;

/** A process that tries to lock `data` at the moment `at` (ms since the epoch), says "held" or "refused", and keeps a lock it got for `holdMs`. */
function contender(data: string, at: number, holdMs: number): Promise<string> {
  const script = `
    const { lockDataFolder } = await import(${JSON.stringify(MODULE)});
    // Asleep until just before the moment, then to the millisecond: the machine runs other tests meanwhile.
    await new Promise((resolve) => setTimeout(resolve, ${at} - Date.now() - 20));
    while (Date.now() < ${at}) {}
    try {
      await lockDataFolder(${JSON.stringify(data)}, { info() {}, warn() {}, error() {} });
      console.log("held");
      setTimeout(() => {}, ${holdMs});
    } catch (error) {
      console.log(error.name === "DataFolderInUseError" ? "refused" : error.message);
    }`;
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ["--input-type=module", "-e", script]);
    let out = "";
    child.stdout.on("data", (chunk) => (out += chunk));
    child.on("error", fail);
    child.on("close", () => done(out.trim()));
  });
}

describe("the data folder's lock", () => {
  it("goes to exactly one of several nodes started at the same moment over a stale lock", async () => {
    for (let trial = 0; trial < 6; trial++) {
      const data = await mkdtemp(join(tmpdir(), "nanocdn-lock-"));
      await mkdir(join(data, "state"));
      // Left by a node that died: its pid is gone. Every third trial, a start died taking it over, too.
      await writeFile(join(data, "state", "serve.pid"), "999999999 12345\n");
      if (trial % 3 === 0) await writeFile(join(data, "state", "serve.pid.takeover"), "999999998 12345\n");
      // Time enough for three Node.js processes to start on a loaded machine; the winner holds on until every late one is refused.
      const at = Date.now() + 1500;
      const answers = await Promise.all([1, 2, 3].map(() => contender(data, at, 2500)));
      expect(answers.sort(), `trial ${trial}`).toEqual(["held", "refused", "refused"]);
      // Nothing of the takeover is left beside the lock.
      expect(await readdir(join(data, "state"))).toEqual(["serve.pid"]);
    }
  }, 60_000);

  it("starts without it, and says so, when the lock there cannot be read", async () => {
    const data = await mkdtemp(join(tmpdir(), "nanocdn-lock-"));
    await mkdir(join(data, "state", "serve.pid"), { recursive: true });
    const warnings: string[] = [];
    const { lockDataFolder } = (await import(MODULE)) as typeof import("../../src/adapters/node/process/data-folder-lock.ts");
    await lockDataFolder(data, { info() {}, warn: (_fields: object, message: string) => void warnings.push(message), error() {} });
    expect(warnings).toEqual(["cannot write the data folder's lock: a second node started on this data folder would not be refused"]);
  });
});
