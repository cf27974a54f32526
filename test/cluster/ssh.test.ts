import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startCluster, type TestCluster, nodeStatus, untilSettled } from "../helpers/cluster.ts";
import { basic } from "../helpers/credentials.ts";
import { listFiles, placeFile } from "../helpers/disk.ts";
import { eventually } from "../helpers/eventually.ts";
import { makeKey, startSshd, type TestSshd } from "../helpers/sshd.ts";
import { processesNaming } from "../helpers/processes.ts";

const auth = { Authorization: basic() };

describe("replication over ssh, confined by rrsync", () => {
  let cluster: TestCluster | undefined;
  let sshd: TestSshd | undefined;
  afterEach(async () => {
    // Stopped, a node ends its shared ssh connections; killed, it would leave them open for a minute.
    await Promise.all(["1", "2"].map((id) => cluster?.stop(id)));
    await cluster?.stopAll();
    await sshd?.stop();
  });

  /** Two nodes replicating over ssh, each key confined by rrsync to its replica on the other node. */
  async function startSshCluster() {
    const keyDir = await mkdtemp(join(tmpdir(), "nanocdn-keys-"));
    const keys = { "1": makeKey(keyDir, "node1"), "2": makeKey(keyDir, "node2") };
    // The folders exist before the nodes do: the cluster helper puts node N's data in <dir>/node<N>/data.
    let dataOf: (id: string) => string = () => "";
    cluster = await startCluster({
      size: 2,
      config: (id) => ({ rsync_ssh: sshd!.sshCommand(keys[id as "1" | "2"]) }),
      // The key each node logs in with decides which folder it reaches: no path needed.
      peer: () => ({ rsync: `${userInfo().username}@127.0.0.1:` }),
      beforeStart: async (data) => {
        dataOf = data;
        sshd = await startSshd([
          { publicKey: await readFile(`${keys["1"]}.pub`, "utf8"), folder: join(data("2"), "files", "1") },
          { publicKey: await readFile(`${keys["2"]}.pub`, "utf8"), folder: join(data("1"), "files", "2") },
        ]);
      },
    });
    return { keys, keyDir, dataOf };
  }

  it("pushes, deletes and restores through the forced command, and a key reaches nothing else", async () => {
    const { keys, keyDir, dataOf } = await startSshCluster();
    const c = cluster!;

    const created = await fetch(`${c.url("1")}/upload/pub/over-ssh.txt`, { method: "PUT", body: "via rrsync", headers: auth });
    expect(created.status).toBe(201);
    const onTwo = join(dataOf("2"), "files", "1", "pub", "over-ssh.txt");
    await eventually(async () => expect(await readFile(onTwo, "utf8")).toBe("via rrsync"));
    // rsync renames the file into place a moment before it exits and the node records success.
    await eventually(async () => expect((await nodeStatus(c, "1")).replication[0]).toMatchObject({ transport: "ssh", backlog: 0 }));

    // Node 1's key opens node 1's replica on node 2 and nothing else.
    const intruder = join(keyDir, "intruder.txt");
    await writeFile(intruder, "node 1 pretending");
    for (const destination of [`${sshd!.user}@127.0.0.1:../2/`, `${sshd!.user}@127.0.0.1:/etc/`]) {
      spawnSync("rsync", ["-a", "-e", sshd!.sshCommand(keys["1"]), intruder, destination]);
    }
    expect(await listFiles(join(dataOf("2"), "files", "2"))).not.toContain("intruder.txt");
    expect(await readFile("/etc/intruder.txt").catch(() => "absent")).toBe("absent");

    expect((await fetch(`${c.url("1")}/1/pub/over-ssh.txt`, { method: "DELETE", headers: auth })).status).toBe(204);
    await eventually(async () => expect(await readFile(onTwo).catch(() => "gone")).toBe("gone"));

    // A wiped node 1 pulls its files back through the same confined key.
    const kept = await fetch(`${c.url("1")}/upload/priv/kept.txt`, { method: "PUT", body: "kept", headers: auth });
    expect(kept.status).toBe(201);
    await eventually(async () => expect(await listFiles(join(dataOf("2"), "files", "1"))).toContain("priv/kept.txt"));

    // Node 1 ran at least five transfers (its start-up pull and full pass,
    // two uploads, a delete) over one shared connection (the intruder's two
    // attempts logged in with its key too); stopping ends that connection.
    expect(sshd!.logins(keys["1"])).toBe(1 + 2);
    const sockets = join(dataOf("1"), "state", "ssh");
    // The shared connection names itself after its socket (a push's own ssh may still be exiting beside it).
    expect(processesNaming(sockets).filter(({ command }) => command.startsWith(`ssh: ${sockets}/`) && command.endsWith("[mux]"))).toHaveLength(1);
    await c.stop("1");
    await eventually(async () => expect(processesNaming(sockets)).toEqual([]));
    await rm(dataOf("1"), { recursive: true });
    await c.start("1");
    await eventually(async () => expect((await nodeStatus(c, "1")).ownFiles).toBe("complete"), 30_000);
    expect(await readFile(join(dataOf("1"), "files", "1", "priv", "kept.txt"), "utf8")).toBe("kept");
    // Some 20 s on an idle 2-core machine: two node starts, a restore and a dozen ssh transfers.
  }, 90_000);

  it("neither pushes into nor pulls from a node's own folder that a key opens by mistake", async () => {
    const keyDir = await mkdtemp(join(tmpdir(), "nanocdn-keys-"));
    const keys = { "1": makeKey(keyDir, "node1"), "2": makeKey(keyDir, "node2") };
    let dataOf: (id: string) => string = () => "";
    const ownMarker = (id: string) => join(dataOf(id), "files", id, ".nanocdn-owner");
    cluster = await startCluster({
      size: 2,
      waitForPeers: false,
      config: (id) => ({ rsync_ssh: sshd!.sshCommand(keys[id as "1" | "2"]) }),
      peer: () => ({ rsync: `${userInfo().username}@127.0.0.1:` }),
      beforeStart: async (data) => {
        dataOf = data;
        // Both nodes hold their files already; node 1's key opens node 2's own folder, not its replica.
        await placeFile(join(data("2"), "files", "2", "pub", "mine.txt"), "node 2's own");
        for (const id of ["1", "2"]) await placeFile(ownMarker(id), `${JSON.stringify({ node: id, pullFrom: [] })}\n`);
        sshd = await startSshd([
          { publicKey: await readFile(`${keys["1"]}.pub`, "utf8"), folder: join(data("2"), "files", "2") },
          { publicKey: await readFile(`${keys["2"]}.pub`, "utf8"), folder: join(data("1"), "files", "2") },
        ]);
      },
    });
    const c = cluster;
    const refusal = /holds \.nanocdn-owner: it is a node's own folder, not a replica of node 1's files/;
    const intact = async () => {
      expect(await listFiles(join(dataOf("2"), "files", "2"))).toEqual(expect.arrayContaining([".nanocdn-owner", "pub/mine.txt"]));
      expect(await listFiles(join(dataOf("1"), "files", "1"))).not.toContain("pub/mine.txt");
    };
    // The full pass, whose --delete would empty that folder.
    await eventually(async () => expect((await nodeStatus(c, "1")).replication[0].lastError).toMatch(refusal));
    await intact();
    // The restore of a node that lost its marker, which would take node 2's files for node 1's.
    await c.stop("1");
    await rm(ownMarker("1"));
    await c.start("1");
    await eventually(async () => expect(c.nodes["1"]!.output()).toMatch(new RegExp(`${refusal.source}.*"msg":"cannot restore from this peer yet"`)));
    await intact();
  });

  it("sends a file again over ssh when it was replaced within its second by one of the same size, which a full pass cannot tell", async () => {
    const { dataOf } = await startSshCluster();
    const c = cluster!;
    const own = join(dataOf("1"), "files", "1");
    const replica = join(dataOf("2"), "files", "1");
    const put = (body: string) => fetch(`${c.url("1")}/upload/pub/s.txt`, { method: "PUT", body, headers: auth });
    // No run may be under way when the folder goes away: one whose receiver is
    // already in it would apply the delete below to the copy the test keeps.
    await untilSettled(c);
    expect((await put("AAAAAAAA")).status).toBe(201);
    await eventually(async () => expect(await readFile(join(replica, "pub", "s.txt"), "utf8")).toBe("AAAAAAAA"));
    await untilSettled(c);
    // The replica cannot be reached (its folder is away) while the name is deleted and uploaded again.
    await rename(replica, `${replica}.away`);
    await writeFile(replica, "not a folder: every push fails");
    expect((await fetch(`${c.url("1")}/1/pub/s.txt`, { method: "DELETE", headers: auth })).status).toBe(204);
    expect((await put("BBBBBBBB")).status).toBe(201);
    // As if the old copy had been written in the same second: over ssh a full pass compares times to the second.
    for (const path of [join("pub", "s.txt"), join("meta", "pub", "s.txt")]) {
      const { mtime } = await stat(join(own, path));
      await utimes(join(`${replica}.away`, path), mtime, mtime);
    }
    c.nodes["1"]!.child.kill("SIGHUP");
    await rm(replica);
    await rename(`${replica}.away`, replica);
    await eventually(async () => expect(await readFile(join(replica, "pub", "s.txt"), "utf8")).toBe("BBBBBBBB"), 30_000);
  });
});
