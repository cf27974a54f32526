import { describe, expect, it } from "vitest";
import { sshControlPath } from "../../src/adapters/node/replication/rsync.ts";

describe("the socket of a shared ssh connection", () => {
  const dir = "/var/lib/nanocdn/state/ssh";

  it("is one per login and ssh command, whatever the path on the peer", () => {
    const push = sshControlPath(dir, "ssh -i /etc/nanocdn/key", "nanocdn@10.0.0.2:/var/lib/nanocdn/files/1/");
    expect(push).toMatch(/^\/var\/lib\/nanocdn\/state\/ssh\/[0-9a-f]{16}$/);
    expect(sshControlPath(dir, "ssh -i /etc/nanocdn/key", "nanocdn@10.0.0.2:")).toBe(push);
    for (const [ssh, remote] of [
      ["ssh -i /etc/nanocdn/other-key", "nanocdn@10.0.0.2:"],
      ["ssh -i /etc/nanocdn/key", "backup@10.0.0.2:"],
      ["ssh -i /etc/nanocdn/key", "nanocdn@10.0.0.3:"],
      ["ssh -i /etc/nanocdn/key", "nanocdn@[fd00::2]:/srv/"],
    ]) {
      expect(sshControlPath(dir, ssh!, remote!), `${ssh} ${remote}`).not.toBe(push);
    }
  });

  it("is none (a connection per run) where ssh could not bind it or rsync would split it", () => {
    expect(sshControlPath(`/${"d".repeat(80)}`, "ssh", "n@h:")).toBeUndefined();
    expect(sshControlPath("/srv/my data/state/ssh", "ssh", "n@h:")).toBeUndefined();
    expect(sshControlPath("/srv/100%/state/ssh", "ssh", "n@h:")).toBeUndefined();
  });
});
