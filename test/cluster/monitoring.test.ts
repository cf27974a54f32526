import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.ts";
import { startCluster, type TestCluster } from "../helpers/cluster.ts";
import { basic, PASSWORD, USER } from "../helpers/credentials.ts";
import { eventually } from "../helpers/eventually.ts";
import { promtoolCheck, sample } from "../helpers/metrics.ts";
import { START_CHECK_AGENT } from "../helpers/node-process.ts";

/** Debian's Chromium: browsers downloaded by npm packages are not used. */
const CHROMIUM = process.env.NANOCDN_TEST_CHROMIUM ?? "/usr/bin/chromium";
const auth = { Authorization: basic() };

describe("watching a cluster: metrics, status page, status command, logs", () => {
  let cluster: TestCluster;
  let browser: Browser | undefined;

  beforeAll(async () => {
    cluster = await startCluster({ size: 3, replicate: true });
  });

  afterAll(async () => {
    await browser?.close();
    await cluster?.stopAll();
  });

  it("starts without warnings, and keeps the nodes' health probes of each other out of the info log", async () => {
    // Seconds of probes (every 200 ms per peer) have gone by while the cluster came up.
    for (const id of cluster.ids) {
      const lines = cluster.nodes[id]!.output().split("\n");
      expect(
        lines.filter((l) => l.includes('"level":"warn"') || l.includes('"level":"error"')),
        `node ${id}`,
      ).toEqual([]);
      expect(
        lines.filter((l) => l.includes('"path":"/check/"') && !l.includes(`"agent":"${START_CHECK_AGENT}"`)),
        `node ${id}`,
      ).toEqual([]);
      expect(
        lines.some((l) => l.includes('"msg":"peer is up"')),
        `node ${id}`,
      ).toBe(true);
    }
  });

  it("reports peer health, replication backlog and lag in /metrics", async () => {
    const created = await fetch(`${cluster.url("1")}/upload/pub/watched.txt`, { method: "PUT", body: "watched", headers: auth });
    expect(created.status).toBe(201);
    await eventually(async () => {
      const text = await (await fetch(`${cluster.url("1")}/metrics`, { headers: auth })).text();
      for (const peer of ["2", "3"]) {
        expect(sample(text, `nanocdn_peer_up{peer="${peer}"}`)).toBe(1);
        expect(sample(text, `nanocdn_replication_backlog{peer="${peer}"}`)).toBe(0);
        expect(sample(text, `nanocdn_replication_lag_seconds{peer="${peer}"}`)).toBeGreaterThanOrEqual(0);
        expect(sample(text, `nanocdn_replication_failures_total{peer="${peer}"}`)).toBe(0);
      }
      expect(sample(text, "nanocdn_own_files_complete")).toBe(1);
      expect((await promtoolCheck(text)).code).toBe(0);
    });
  });

  it("shows every node's own facts in the JSON status, and `nanocdn status` exits 0 while all are up and caught up", async () => {
    const status = (await (await fetch(`${cluster.url("2")}/status`, { headers: auth })).json()) as { nodes: Record<string, unknown>[] };
    expect(status.nodes.map((n) => n.node)).toEqual(["2", "1", "3"]);
    for (const node of status.nodes) {
      expect(node).toMatchObject({
        up: true,
        version: expect.any(String),
        ownFiles: "complete",
        diskFreeBytes: expect.any(Number),
        uptimeSeconds: expect.any(Number),
      });
    }
    expect(status.nodes[1]).toMatchObject({ replication: { peer: "1", backlog: 0 } });
    await eventually(
      async () => {
        const result = await runCli(["status", "--config", cluster.nodes["1"]!.configFile]);
        expect(result.stdout).toMatch(/all 3 nodes up, replication caught up/);
        expect(result.code).toBe(0);
      },
      30_000,
      500,
    );
  });

  it("shows a stopped node as down on the status page in a browser, and `nanocdn status` exits 1 naming it", async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    const context = await browser.newContext({ httpCredentials: { username: USER, password: PASSWORD } });
    const page = await context.newPage();
    const response = await page.goto(`${cluster.url("1")}/status`);
    expect(response?.headers()["content-type"]).toMatch(/^text\/html/);
    await expect(page.title()).resolves.toMatch(/all 3 nodes up/);
    expect(await page.locator("tr[data-node]").evaluateAll((rows) => rows.map((r) => [r.getAttribute("data-node"), r.getAttribute("data-up")]))).toEqual([
      ["1", "true"],
      ["2", "true"],
      ["3", "true"],
    ]);
    expect(await page.locator('tr[data-node="2"]').textContent()).toMatch(/up.*\d+\.\d+\.\d+.*complete/s);

    await cluster.kill("3");
    // The page reloads itself: no reload from here.
    await page.locator('tr[data-node="3"][data-up="false"]').waitFor({ timeout: 30_000 });
    expect(await page.locator('tr[data-node="3"]').textContent()).toMatch(/down since/);
    expect(await page.title()).toMatch(/1 of 3 nodes down/);

    const result = await runCli(["status", "--config", cluster.nodes["1"]!.configFile]);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^3\s+DOWN/m);
    expect(result.stdout).toContain("node 3 did not answer: connection refused (ECONNREFUSED)");
    expect(result.stdout).toMatch(/node 1 sees node 3 down: connection refused \(ECONNREFUSED\)/);
  });
});
