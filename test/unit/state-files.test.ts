import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { removeEntriesOlderThan, writeWhole } from "../../src/adapters/node/disk/whole-file.ts";
import { ExpiryIndex } from "../../src/adapters/node/expiry/expiry-index.ts";
import { LegacyDeleteQueue, recordLegacyDelete } from "../../src/adapters/node/peers/legacy-deletes.ts";
import type { Logger } from "../../src/handlers/logger.ts";

const made: string[] = [];
afterEach(async () => {
  for (const folder of made.splice(0)) await rm(folder, { recursive: true, force: true });
});

async function stateFolder(): Promise<string> {
  const base = await mkdtemp(join(tmpdir(), "nanocdn-state-"));
  made.push(base);
  return base;
}

/** What a crash between writing a state file and naming it leaves: a stale temp file, and one being written now. */
async function leaveTemps(folder: string): Promise<{ stale: string; fresh: string }> {
  const [stale, fresh] = [`.${randomUUID()}`, `.${randomUUID()}`];
  await writeFile(join(folder, stale), "half");
  const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
  await utimes(join(folder, stale), twoHoursAgo, twoHoursAgo);
  await writeFile(join(folder, fresh), "half");
  return { stale, fresh };
}

describe("small state files (real files in a temporary folder)", () => {
  it("a failed write leaves no temp file", async () => {
    const folder = await stateFolder();
    await mkdir(join(folder, "taken"));
    await expect(writeWhole(folder, "taken", "x", false)).rejects.toThrow();
    expect(await readdir(folder)).toEqual(["taken"]);
  });

  it("the temp folder's sweep removes what nothing wrote to for its age, folders too, and keeps an upload still written to", async () => {
    const folder = await stateFolder();
    const { fresh } = await leaveTemps(folder);
    await mkdir(join(folder, "stale-folder"));
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    await utimes(join(folder, "stale-folder"), twoHoursAgo, twoHoursAgo);
    await removeEntriesOlderThan(folder, 3600_000);
    expect(await readdir(folder)).toEqual([fresh]);
    // A folder not there (yet) is nothing to sweep.
    await expect(removeEntriesOlderThan(join(folder, "missing"), 0)).resolves.toBeUndefined();
  });

  it("the expiry index removes the temp files a crash left, not one being written, and lists only entries", async () => {
    const dir = join(await stateFolder(), "expiry");
    const index = new ExpiryIndex(dir, { fsync: false });
    const at = Math.floor(Date.now() / 1000) - 7200;
    await index.record("1/pub/a.txt", at);
    const bucket = join(dir, String(Math.floor(at / 3600)));
    const [entry] = await readdir(bucket);
    const { fresh } = await leaveTemps(bucket);
    expect((await index.due(at)).map(({ key }) => key)).toEqual(["1/pub/a.txt"]);
    expect((await readdir(bucket)).sort()).toEqual([entry, fresh].sort());
  });

  it("the legacy delete queue does the same, and counts and sends only deletes", async () => {
    const dir = join(await stateFolder(), "legacy-deletes");
    await recordLegacyDelete(dir, ["2"], "pub/logo.png");
    const { fresh } = await leaveTemps(join(dir, "2"));
    // Not a delete either: what an editor or a copy by hand may leave.
    await writeFile(join(dir, "2", ".notes.swp"), "pub/other.png");
    const sent: string[] = [];
    const logged: string[] = [];
    const log: Logger = { info: (_fields, message) => logged.push(`${message}`), warn: () => {}, error: () => {} };
    const queue = new LegacyDeleteQueue(dir, ["2"], async (_peer, key) => sent.push(key) > 0, log);
    expect(await queue.pending()).toEqual({ "2": 1 });
    await queue.flush("2");
    expect(sent).toEqual(["pub/logo.png"]);
    expect(logged).toEqual(["legacy delete delivered"]);
    expect((await readdir(join(dir, "2"))).sort()).toEqual([fresh, ".notes.swp"].sort());
    expect(await queue.pending()).toEqual({ "2": 0 });
  });

  it("the legacy delete queue goes past a delete the peer refuses, and keeps it for the next pass", async () => {
    const dir = join(await stateFolder(), "legacy-deletes");
    for (const key of ["pub/a.png", "pub/refused.png", "pub/z.png"]) await recordLegacyDelete(dir, ["2"], key);
    const sent: string[] = [];
    const warned: string[] = [];
    const log: Logger = { info: () => {}, warn: (fields) => warned.push(String((fields as { key?: string }).key)), error: () => {} };
    // The peer answers 500 for one file (a disk error there), 204 for the others.
    const queue = new LegacyDeleteQueue(dir, ["2"], async (_peer, key) => sent.push(key) > 0 && key !== "pub/refused.png", log);
    await queue.flush("2");
    expect(sent.sort()).toEqual(["pub/a.png", "pub/refused.png", "pub/z.png"]);
    expect(warned).toEqual(["pub/refused.png"]);
    expect(await queue.pending()).toEqual({ "2": 1 });
    sent.length = 0;
    await queue.flush("2");
    expect(sent).toEqual(["pub/refused.png"]);
  });
});
