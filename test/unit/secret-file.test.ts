import { chmod, mkdtemp, stat, writeFile } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { accountName } from "../../src/adapters/node/users/account-name.ts";
import { unreadableSecret, warnIfOthersRead } from "../../src/adapters/node/users/secret-file.ts";
import type { Logger } from "../../src/handlers/logger.ts";

describe("a secret file", () => {
  it("may be the node's user's or group's (600, 640), and a warning says when every user, or another group, can read it", async () => {
    const file = join(await mkdtemp(join(tmpdir(), "nanocdn-secret-")), "cluster.secret");
    await writeFile(file, "a secret of the cluster\n");
    const warned: string[] = [];
    const log: Logger = { info: () => {}, warn: (_fields, message) => warned.push(message ?? ""), error: () => {} };
    // The file's group is this process's; a node's user that has it as its own or as a supplementary group, or another.
    const group = (await stat(file)).gid;
    const node = { uid: 4242, gids: [group + 1, group] };
    const outsider = { uid: 4242, gids: [group + 1, group + 2] };
    const root = { uid: 0, gids: [0] };
    for (const [mode, reader] of [
      [0o600, outsider],
      [0o640, node],
      [0o640, root],
      [0o644, node],
      [0o604, root],
      [0o620, outsider],
      [0o640, outsider],
    ] as const) {
      await chmod(file, mode);
      await warnIfOthersRead(file, "the cluster secret file", log, reader);
    }
    expect(warned).toEqual([
      ...Array(2).fill("the cluster secret file is readable by every user of this machine; chmod o-rwx it (mode 600, or 640 for root and the node's group)"),
      `the cluster secret file is readable by the members of group ${await accountName("group", group)}, not the node's; chmod g-rwx it, or chgrp it to the node's group`,
    ]);
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
