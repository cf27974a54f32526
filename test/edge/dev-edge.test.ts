import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLUSTER_SECRET, startCluster, type TestCluster } from "../helpers/cluster.ts";
import { basic } from "../helpers/credentials.ts";
import { eventually } from "../helpers/eventually.ts";
import { freePort } from "../helpers/ports.ts";

const ROOT = resolve(import.meta.dirname, "../..");

describe("npm run dev:edge", () => {
  let cluster: TestCluster;
  let child: ChildProcess;
  let output = "";
  let port: number;
  let dir: string;

  beforeAll(async () => {
    cluster = await startCluster({ size: 2 });
    dir = await mkdtemp(join(tmpdir(), "nanocdn-dev-edge-"));
    port = await freePort();
    const origins = cluster.ids.map((id) => `${id}=${cluster.url(id)}`).join(",");
    // Its own process group, so that the whole tree (npm, wrangler, workerd) can be stopped.
    child = spawn(
      "npm",
      [
        "run",
        "dev:edge",
        "--",
        "--origins",
        origins,
        "--cluster-secret-file",
        join(cluster.dir, "cluster.secret"),
        "--htpasswd",
        join(cluster.dir, "htpasswd"),
        "--port",
        String(port),
      ],
      { cwd: ROOT, detached: true, env: { ...process.env, NANOCDN_DEV_DIR: dir }, stdio: ["ignore", "pipe", "pipe"] },
    );
    child.stdout!.on("data", (c) => (output += c));
    child.stderr!.on("data", (c) => (output += c));
    for (let i = 0; i < 600 && !output.includes("Ready on"); i++) await new Promise((r) => setTimeout(r, 100));
    if (!output.includes("Ready on")) throw new Error(`wrangler dev did not start:\n${output}`);
  }, 120_000);

  afterAll(async () => {
    if (child?.pid) {
      const exited = new Promise((r) => child.on("exit", r));
      process.kill(-child.pid, "SIGTERM");
      await exited;
    }
    await cluster?.stopAll();
  });

  it("starts on loopback with telemetry off, its secrets in a private file", async () => {
    expect(output).toContain(`Ready on http://127.0.0.1:${port}`);
    expect(output).not.toMatch(/metrics|telemetry/i);
    expect(output).not.toContain(CLUSTER_SECRET);
    expect((await stat(join(dir, ".wrangler", "edge.dev.vars"))).mode & 0o777).toBe(0o600);
  });

  it("serves uploads and cached reads from the origins", async () => {
    const uploaded = await fetch(`http://127.0.0.1:${port}/upload/pub/dev-edge.txt`, {
      method: "PUT",
      body: "through the edge",
      headers: { Authorization: basic() },
    });
    expect(uploaded.status).toBe(201);
    const location = uploaded.headers.get("Location")!;
    const first = await fetch(`http://127.0.0.1:${port}${location}`);
    expect([first.headers.get("X-Nanocdn-Cache"), await first.text()]).toEqual(["MISS", "through the edge"]);
    // The cache takes its copy while the first reader streams the file.
    await eventually(async () => {
      const later = await fetch(`http://127.0.0.1:${port}${location}`);
      expect([later.headers.get("X-Nanocdn-Cache"), await later.text()]).toEqual(["HIT", "through the edge"]);
    });
  });
});
