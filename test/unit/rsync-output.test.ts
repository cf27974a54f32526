import { describe, expect, it } from "vitest";
import { atLeast, refusedFilesOf, runRsync, unwritableOf } from "../../src/adapters/node/replication/rsync.ts";

describe("what rsync says", () => {
  it("names the last file the receiver could not write or fsync, as the receiver names it", () => {
    const stderr = [
      'rsync: [receiver] write failed on "pub/big.bin" (in from-1): No space left on device (28)',
      "rsync error: error in file IO (code 11) at receiver.c(380) [receiver=3.2.7]",
    ].join("\n");
    expect(unwritableOf(stderr)).toBe("pub/big.bin");
    expect(unwritableOf('rsync: [receiver] fsync failed on "/srv/replica/1/pub/a b.txt": Input/output error (5)\n')).toBe("/srv/replica/1/pub/a b.txt");
    expect(
      unwritableOf('write failed on "pub/one.bin": No space left on device (28)\nfsync failed on "pub/two.bin" (in from-1): Input/output error (5)\n'),
    ).toBe("pub/two.bin");
    expect(unwritableOf("rsync: [sender] read error: Connection reset by peer (104)\n")).toBeUndefined();
  });

  it("names the files a run left out (exit 23) as the receiver names them, a temporary name as its file's", () => {
    // rsync 3.5.0, into a folder it may not write into: through a daemon (its temp dir), and beside the file (ssh, a local folder).
    const stderr = [
      'rsync: [receiver] rename ".nanocdn-rsync-tmp/y.xVw5er" (in nanocdn) -> "pub/b/y": Operation not permitted (1)',
      'rsync: [receiver] mkstemp "/srv/replicas/1/pub/c d/.z.txt.bgLyOw" failed: Operation not permitted (1)',
      'rsync: [receiver] mkstemp "meta/pub/e/.w.Ab12Cd" (in nanocdn) failed: Permission denied (13)',
      "rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1394) [sender=3.5.0]",
    ].join("\n");
    expect(refusedFilesOf(stderr)).toEqual(["pub/b/y", "/srv/replicas/1/pub/c d/z.txt", "meta/pub/e/w"]);
  });

  it("says which signal ended an rsync run, and what it said before", async () => {
    const options = { connectTimeoutS: 1, ioTimeoutS: 1 };
    const ended = (stderr: string) => async () => ({ code: null, killedBy: "SIGKILL" as const, stdout: "", stderr });
    expect(await runRsync([], { ...options, launch: ended("") })).toEqual({ ok: false, code: null, message: "rsync was ended by SIGKILL" });
    expect((await runRsync([], { ...options, launch: ended("rsync: [sender] sending pub/a.txt\n") })).message).toBe(
      "rsync was ended by SIGKILL: rsync: [sender] sending pub/a.txt",
    );
  });

  it("compares versions part by part, a missing part counting as 0", () => {
    const cases: [string, string, boolean][] = [
      ["3.2.4", "3.2.4", true],
      ["3.2.3", "3.2.4", false],
      ["3.2.10", "3.2.4", true],
      ["3.10.0", "3.2.4", true],
      ["4.0.0", "3.2.4", true],
      ["2.6.9", "3.2.4", false],
      ["3.2", "3.2.4", false],
      ["3.3", "3.2.4", true],
    ];
    expect(cases.map(([have, need]) => [have, need, atLeast(have, need)])).toEqual(cases);
  });
});
