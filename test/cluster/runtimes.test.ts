import { spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { copyFile, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "node:tls";
import { Agent, fetch as undiciFetch } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCluster, type TestCluster } from "../helpers/cluster.ts";
import { basic } from "../helpers/credentials.ts";
import { listFiles, placeFile } from "../helpers/disk.ts";
import { eventually } from "../helpers/eventually.ts";
import { sample } from "../helpers/metrics.ts";
import type { Runtime } from "../helpers/runtimes.ts";
import { startNodeProcess } from "../helpers/node-process.ts";
import { makeCa, makeServerCertificate } from "../helpers/tls.ts";
import { withChildren } from "../helpers/processes.ts";

const auth = { Authorization: basic() };

/** The fingerprint of the certificate a node presents to a new connection. */
async function servedFingerprint(port: number, caFile: string): Promise<string> {
  const ca = await readFile(caFile);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, ca }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.end();
    });
    socket.on("error", reject);
  });
}

/**
 * One representative cluster per runtime: two nodes on Bun or Deno that talk
 * to each other over HTTPS with a private CA and replicate with rsync.
 */
describe.each<{ runtime: Runtime }>([{ runtime: "bun" }, { runtime: "deno" }])("a cluster on $runtime", ({ runtime }) => {
  let cluster: TestCluster;
  let client: Agent;
  const request = (url: string, init: Record<string, unknown> = {}) => undiciFetch(url, { ...init, dispatcher: client });
  const status = async (id: string) =>
    (await (await request(`${cluster.url(id)}/status`, { headers: auth })).json()) as {
      ownFiles: string;
      replication: { lastFullPass?: string }[];
      peers: { id: string; up: boolean }[];
    };
  const metric = async (id: string, series: string) => {
    const response = await request(`${cluster.url(id)}/metrics`, { headers: auth });
    expect(response.status).toBe(200);
    return sample(await response.text(), series) ?? 0;
  };

  let pki: { dir: string; ca: ReturnType<typeof makeCa>; certs: Record<"1" | "2", ReturnType<typeof makeServerCertificate>> };

  beforeAll(async () => {
    const dir = await mkdtemp(join(tmpdir(), "nanocdn-pki-"));
    const ca = makeCa(dir);
    const certs = { "1": makeServerCertificate(dir, "node1", ca), "2": makeServerCertificate(dir, "node2", ca) };
    pki = { dir, ca, certs };
    client = new Agent({ connect: { ca: await readFile(ca.cert) } });
    cluster = await startCluster({
      size: 2,
      runtime,
      replicate: true,
      scheme: "https",
      // Node 1 with two serving processes sharing its socket, as `workers = "auto"` runs on two cores.
      config: (id) => ({
        tls_cert: certs[id as "1" | "2"].cert,
        tls_key: certs[id as "1" | "2"].key,
        ca_file: ca.cert,
        ...(id === "1" && { workers: 2 }),
      }),
    });
  }, 60_000);

  afterAll(async () => {
    await cluster?.stopAll();
    await client?.close();
  });

  it("replicates an upload, reads a peer's file through the other node, and restores a wiped node", async () => {
    const c = cluster;
    const created = await request(`${c.url("1")}/upload/pub/runtime.txt`, { method: "PUT", body: `on ${runtime}`, headers: auth });
    expect(created.status).toBe(201);
    const location = created.headers.get("Location")!;
    const replica = join(c.data("2"), "files", location.slice(1));
    await eventually(async () => expect(await readFile(replica, "utf8")).toBe(`on ${runtime}`));

    // A file node 2 holds no copy of: node 2 fetches it from node 1 over HTTPS.
    await eventually(async () => expect((await status("1")).replication[0]?.lastFullPass).toBeDefined());
    await placeFile(join(c.data("1"), "files", "1", "pub", "only-on-1.txt"), "from the owner");
    const read = await request(`${c.url("2")}/1/pub/only-on-1.txt`);
    expect(read.status).toBe(200);
    expect(read.headers.get("X-Nanocdn-Served-By")).toBe("1");
    expect(await read.text()).toBe("from the owner");

    // Node 2's own files come back from node 1 after its disk is lost.
    const own = await request(`${c.url("2")}/upload/priv/own.txt`, { method: "PUT", body: "node 2's own", headers: auth });
    expect(own.status).toBe(201);
    const ownLocation = own.headers.get("Location")!;
    await eventually(async () => expect(await listFiles(join(c.data("1"), "files", "2"))).toContain(ownLocation.slice(3)));
    await c.kill("2");
    await rm(c.data("2"), { recursive: true });
    await c.start("2");
    await eventually(async () => expect((await status("2")).ownFiles).toBe("complete"), 30_000);
    const restored = await request(c.url("2") + ownLocation, { headers: auth });
    expect(restored.headers.get("X-Nanocdn-Served-By")).toBe("2");
    expect(await restored.text()).toBe("node 2's own");
  });

  it("takes many uploads at once on two serving processes, and counts them all in /metrics", async () => {
    const counted = () => metric("1", "nanocdn_uploads_total");
    const before = await counted();
    const names = Array.from({ length: 64 }, (_, i) => `pub/many/${i}.txt`);
    const answers = await Promise.all(
      names.map(async (name) => {
        const response = await request(`${cluster.url("1")}/upload/${name}`, { method: "PUT", body: name, headers: auth });
        await response.body?.cancel();
        return response.status;
      }),
    );
    expect(answers).toEqual(names.map(() => 201));
    expect((await listFiles(join(cluster.data("1"), "files", "1", "pub", "many"))).sort()).toEqual(names.map((n) => n.slice("pub/many/".length)).sort());
    // The primary adds up what each serving process counted.
    expect((await counted()) - before).toBe(64);
  });

  it("serves a renewed certificate after SIGHUP, with one serving process and with two", async () => {
    const fresh = new Agent({ connect: { ca: await readFile(pki.ca.cert) } });
    try {
      for (const id of ["1", "2"] as const) {
        const node = cluster.nodes[id]!;
        const renewed = makeServerCertificate(pki.dir, `node${id}-renewed`, pki.ca);
        await copyFile(renewed.key, pki.certs[id].key);
        await copyFile(renewed.cert, pki.certs[id].cert);
        const fingerprint = new X509Certificate(await readFile(renewed.cert)).fingerprint256;
        node.child.kill("SIGHUP");
        // Several new connections, so that each serving process answers some.
        await eventually(async () => {
          for (let i = 0; i < 6; i++) expect(await servedFingerprint(node.port, pki.ca.cert)).toBe(fingerprint);
        }, 20_000);
        const upload = await undiciFetch(`${cluster.url(id)}/upload/pub/after-renewal.txt`, {
          method: "PUT",
          body: "renewed",
          headers: auth,
          dispatcher: fresh,
        });
        expect(upload.status, node.output().slice(-3000)).toBe(201);
        expect(await (await undiciFetch(cluster.url(id) + upload.headers.get("Location")!, { dispatcher: fresh })).text()).toBe("renewed");
      }
    } finally {
      await fresh.close();
    }
  });

  it("answers for a hung peer without hanging: its file is unavailable, it is marked down, then up once it runs again", async () => {
    const c = cluster;
    const frozen = withChildren(c.nodes["1"]!.pid);
    for (const pid of frozen) process.kill(pid, "SIGSTOP");
    try {
      // Placed while the owner is stopped, so that no replication pass copies it.
      await placeFile(join(c.data("1"), "files", "1", "pub", "hung-only.txt"), "unreachable");
      const read = await request(`${c.url("2")}/1/pub/hung-only.txt`);
      expect(read.status).toBe(503);
      await read.body?.cancel();
      await eventually(async () => expect((await status("2")).peers.find((p) => p.id === "1")?.up).toBe(false), 20_000);
    } finally {
      for (const pid of frozen) spawnSync("kill", ["-CONT", String(pid)]);
    }
    await eventually(async () => expect((await status("2")).peers.find((p) => p.id === "1")?.up).toBe(true), 20_000);
  });

  it("stops gracefully on SIGTERM", async () => {
    const node = cluster.nodes["1"]!;
    // SIGKILL after a while, so that a node that does not stop shows its output.
    const code = await node.stop("SIGTERM", 20_000);
    expect(code, node.output().slice(-3000)).toBe(0);
    expect(node.output()).toMatch(/"msg":"stopped"/);
  });
});

describe.each<{ runtime: Runtime; workers: number }>(
  (["node", "bun", "deno"] as const).flatMap((runtime) => [
    { runtime, workers: 2 },
    { runtime, workers: 1 },
  ]),
)("a node on $runtime with $workers serving process(es) asked to stop as it starts", ({ runtime, workers }) => {
  it("stops gracefully on a SIGTERM sent as soon as it accepts connections", async () => {
    // The first serving process accepts while the primary may still wait for the second one;
    // a signal then must not end the primary before its handler is in place. One process
    // serves and stops its HTTP server itself.
    const node = await startNodeProcess({ runtime, config: { workers }, waitFor: "listening" });
    const code = await node.stop("SIGTERM", 20_000);
    expect(code, node.output().slice(-3000)).toBe(0);
    expect(node.output()).toMatch(/"msg":"stopped"/);
  });
});
