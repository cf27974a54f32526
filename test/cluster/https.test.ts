import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, fetch as undiciFetch } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { startCluster, type TestCluster } from "../helpers/cluster.ts";
import { runCli } from "../helpers/cli.ts";
import { basic } from "../helpers/credentials.ts";
import { makeCa, makeServerCertificate } from "../helpers/tls.ts";
import { eventually } from "../helpers/eventually.ts";

describe("peers over HTTPS", () => {
  let cluster: TestCluster | undefined;
  afterEach(async () => {
    await cluster?.stopAll();
  });

  async function httpsCluster(trustCa: boolean) {
    const dir = await mkdtemp(join(tmpdir(), "nanocdn-pki-"));
    const ca = makeCa(dir);
    const certs = { "1": makeServerCertificate(dir, "node1", ca), "2": makeServerCertificate(dir, "node2", ca) };
    cluster = await startCluster({
      size: 2,
      scheme: "https",
      config: (id) => ({
        tls_cert: certs[id as "1" | "2"].cert,
        tls_key: certs[id as "1" | "2"].key,
        ...(trustCa && { ca_file: ca.cert }),
      }),
      // Without the CA, the nodes never trust each other.
      waitForPeers: trustCa,
    });
    const client = new Agent({ connect: { ca: await readFile(ca.cert) } });
    const request = (url: string, init: Record<string, unknown> = {}) => undiciFetch(url, { ...init, dispatcher: client });
    return { cluster, request };
  }

  it("reaches peers over https, verifying their certificates against the private CA", async () => {
    const { cluster, request } = await httpsCluster(true);
    const created = await request(`${cluster.url("1")}/upload/priv/tls.txt`, {
      method: "PUT",
      body: "over tls",
      headers: { Authorization: basic() },
    });
    expect(created.status).toBe(201);
    const read = await request(`${cluster.url("2")}/1/priv/tls.txt`, { headers: { Authorization: basic() } });
    expect(read.status).toBe(200);
    expect(read.headers.get("X-Nanocdn-Served-By")).toBe("1");
    expect(await read.text()).toBe("over tls");
    // `nanocdn status` asks both nodes over https, with the config's CA.
    await eventually(async () => {
      const status = await runCli(["status", "--config", cluster.nodes["1"]!.configFile]);
      expect(status.stdout).toMatch(/all 2 nodes up/);
      expect(status.code).toBe(0);
    });
  });

  it("refuses a peer whose certificate it cannot verify", async () => {
    const { cluster, request } = await httpsCluster(false);
    await request(`${cluster.url("1")}/upload/pub/untrusted.txt`, { method: "PUT", body: "x", headers: { Authorization: basic() } });
    const read = await request(`${cluster.url("2")}/1/pub/untrusted.txt`);
    expect(read.status).toBe(503);
    await eventually(async () => expect(cluster.nodes["2"]!.output()).toMatch(/"peer":"1","reason":"UNABLE_TO_VERIFY_LEAF_SIGNATURE"/));
  });
});
