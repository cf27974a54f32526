import { chmod, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { unreadableSecret, warnIfWorldReadable } from "../../src/adapters/node/users/secret-file.ts";
import type { Logger } from "../../src/handlers/logger.ts";

describe("a secret file", () => {
  it("may be the node's user's or group's (600, 640), and a warning says when every user can read it", async () => {
    const file = join(await mkdtemp(join(tmpdir(), "nanocdn-secret-")), "cluster.secret");
    await writeFile(file, "a secret of the cluster\n");
    const warned: string[] = [];
    const log: Logger = { info: () => {}, warn: (_fields, message) => warned.push(message ?? ""), error: () => {} };
    for (const mode of [0o600, 0o640, 0o644, 0o604]) {
      await chmod(file, mode);
      await warnIfWorldReadable(file, "the cluster secret file", log);
    }
    expect(warned).toEqual(
      Array(2).fill("the cluster secret file is readable by every user of this machine; chmod o-rwx it (mode 600, or 640 for root and the node's group)"),
    );
  });

  it("that cannot be read says who must be able to, or what to put there", () => {
    expect(unreadableSecret("/etc/nanocdn/cluster.secret", "EACCES", "the secret the nodes share")).toBe(
      `cannot read /etc/nanocdn/cluster.secret (EACCES) as user ${userInfo().username}, who runs the node: make the file that user's (mode 600), or root's and that user's group's (mode 640)`,
    );
    expect(unreadableSecret("/etc/nanocdn/cluster.secret", "ENOENT", "the secret the nodes share")).toBe(
      "cannot read /etc/nanocdn/cluster.secret (ENOENT); put the secret the nodes share there, mode 600",
    );
  });
});
