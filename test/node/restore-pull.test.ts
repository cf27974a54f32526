import { mkdir, mkdtemp, readFile, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { pullFrom } from "../../src/adapters/node/replication/owner-guard.ts";
import { RSYNC_TEMP_DIR } from "../../src/adapters/node/replication/rsync.ts";
import { placeFile } from "../helpers/disk.ts";

describe("a restore's pull from the replicas (real rsync)", () => {
  it("keeps the newer of two versions of a name, whichever replica answers first", async () => {
    // A replica that was down while the name was deleted and uploaded again still holds the first version.
    for (const order of [
      ["stale", "current"],
      ["current", "stale"],
    ]) {
      const dir = await mkdtemp(join(tmpdir(), "nanocdn-restore-"));
      const own = join(dir, "own");
      await mkdir(join(own, RSYNC_TEMP_DIR), { recursive: true });
      await placeFile(join(dir, "stale", "pub", "r.txt"), "version one");
      const anHourAgo = new Date(Date.now() - 3_600_000);
      await utimes(join(dir, "stale", "pub", "r.txt"), anHourAgo, anHourAgo);
      await placeFile(join(dir, "current", "pub", "r.txt"), "VERSION TWO, longer");
      for (const replica of order) {
        const pulled = await pullFrom({ id: replica, destination: join(dir, replica) }, own, "1", { connectTimeoutS: 5, ioTimeoutS: 30 });
        expect(pulled, replica).toMatchObject({ ok: true });
      }
      expect(await readFile(join(own, "pub", "r.txt"), "utf8"), order.join(" then ")).toBe("VERSION TWO, longer");
    }
  });
});
