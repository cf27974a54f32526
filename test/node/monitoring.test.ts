import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rename, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.ts";
import { traceSyscalls } from "../helpers/strace.ts";
import { basic, bcryptLine, PASSWORD, USER, writeHtpasswd } from "../helpers/credentials.ts";
import { flipByte } from "../helpers/disk.ts";
import { eventually } from "../helpers/eventually.ts";
import { promtoolCheck, sample } from "../helpers/metrics.ts";
import { type NodeProcess, startNodeProcess } from "../helpers/node-process.ts";
import { withChildren } from "../helpers/processes.ts";
import { rawRequest } from "../helpers/raw-http.ts";

const MONITOR = "watcher";
const MONITOR_PASSWORD = "watching only";
const full = { Authorization: basic() };
const monitor = { Authorization: basic(MONITOR, MONITOR_PASSWORD) };

describe("monitoring a node: /metrics, monitor_users, access lines", () => {
  let node: NodeProcess;

  beforeAll(async () => {
    const dir = await mkdtemp(join(tmpdir(), "nanocdn-monitoring-"));
    const htpasswd = join(dir, "htpasswd");
    await writeHtpasswd(htpasswd, [bcryptLine(USER, PASSWORD), bcryptLine(MONITOR, MONITOR_PASSWORD)]);
    // Two serving processes: /metrics must add up what both counted.
    node = await startNodeProcess({
      dir,
      // The second name is no user of the file: a typo, as a node must say.
      config: { htpasswd, workers: 2, monitor_users: [MONITOR, "promethues"], trusted_proxies: ["127.0.0.0/8"] },
    });
  });

  afterAll(async () => {
    await node?.stop();
  });

  const metrics = async () => {
    const response = await fetch(`${node.url}/metrics`, { headers: monitor });
    expect(response.status).toBe(200);
    expect(response.headers.get("Content-Type")).toMatch(/^text\/plain; version=0\.0\.4/);
    return response.text();
  };

  it("warns of a monitor_users name that is no user of the htpasswd file", async () => {
    await eventually(async () =>
      expect(node.output()).toMatch(/"level":"warn"[^\n]*"user":"promethues","msg":"monitor_users names no user of the htpasswd file/),
    );
    expect(node.output()).not.toMatch(new RegExp(`"user":"${MONITOR}","msg":"monitor_users names no user`));
  });

  it("counts every request of every serving process, in a format promtool accepts", async () => {
    const created = await fetch(`${node.url}/upload/pub/counted.txt`, { method: "PUT", body: "twelve bytes", headers: full });
    expect(created.status).toBe(201);
    const before = await metrics();
    const gets = (t: string) => sample(t, 'nanocdn_http_requests_total{method="GET",status="2xx"}') ?? 0;
    // A new connection each, so that both processes serve some (and most are answered from memory).
    for (let i = 0; i < 20; i++) expect((await rawRequest(node.url, "GET", "/1/pub/counted.txt")).body).toBe("twelve bytes");
    const after = await metrics();
    // The 20 reads, and the first /metrics request (counted once answered).
    expect(gets(after) - gets(before)).toBe(21);
    expect(sample(after, "nanocdn_uploads_total")).toBe(1);
    expect(sample(after, 'nanocdn_http_requests_total{method="PUT",status="2xx"}')).toBe(1);
    expect(sample(after, "nanocdn_http_sent_bytes_total")! - sample(before, "nanocdn_http_sent_bytes_total")!).toBeGreaterThanOrEqual(20 * 12);
    expect(sample(after, "nanocdn_http_request_duration_seconds_count")).toBeGreaterThanOrEqual(22);
    expect(sample(after, "nanocdn_store_free_bytes")).toBeGreaterThan(0);
    expect(sample(after, "nanocdn_uploads_degraded_total")).toBe(0);
    expect(sample(after, "nanocdn_uploads_failed_over_total")).toBe(0);
    expect(sample(after, "process_resident_memory_bytes")).toBeGreaterThan(0);
    const check = await promtoolCheck(after);
    expect(check.output).toBe("");
    expect(check.code).toBe(0);
  });

  it("answers /status as a page to a client that prefers HTML, and as JSON to one that prefers JSON or takes anything", async () => {
    const browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    for (const [accept, type] of [
      [browser, "text/html"],
      ["application/json, text/html;q=0.1", "application/json"],
      ["*/*", "application/json"],
      ["text/html;q=0", "application/json"],
    ] as const) {
      const answer = await fetch(`${node.url}/status`, { headers: { ...monitor, Accept: accept } });
      await answer.body?.cancel();
      expect(answer.headers.get("Content-Type"), accept).toContain(type);
    }
  });

  it("lets monitor users read /metrics and /status only, full users too, and nobody anonymous", async () => {
    expect((await fetch(`${node.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${node.url}/status`)).status).toBe(401);
    expect((await fetch(`${node.url}/metrics`, { headers: full })).status).toBe(200);
    expect((await fetch(`${node.url}/status`, { headers: monitor })).status).toBe(200);
    const upload = await fetch(`${node.url}/upload/priv/nope.txt`, { method: "PUT", body: "x", headers: monitor });
    expect(upload.status).toBe(403);
    expect(await upload.json()).toMatchObject({ error: "forbidden" });
    const secret = await fetch(`${node.url}/upload/priv/secret.txt`, { method: "PUT", body: "s", headers: full });
    expect(secret.status).toBe(201);
    const location = secret.headers.get("Location")!;
    expect((await fetch(node.url + location, { headers: monitor })).status).toBe(403);
    expect((await fetch(node.url + location, { method: "DELETE", headers: monitor })).status).toBe(403);
    expect(await (await fetch(node.url + location, { headers: full })).text()).toBe("s");
    expect((await fetch(`${node.url}/1/pub/nope.txt`, { method: "DELETE", headers: monitor })).status).toBe(403);
  });

  it("answers `nanocdn status --user` for a lone node, and refuses a wrong password", async () => {
    const ok = await runCli(["status", "--config", node.configFile, "--user", MONITOR], { env: { NANOCDN_PASSWORD: MONITOR_PASSWORD } });
    expect(ok.stdout).toMatch(/^1\s+up\s+\d+\.\d+\.\d+/m);
    expect(ok.stdout).toMatch(/all 1 nodes up, replication caught up/);
    expect(ok.code).toBe(0);
    const wrong = await runCli(["status", "--config", node.configFile, "--user", MONITOR], { env: { NANOCDN_PASSWORD: "wrong" } });
    expect(wrong.stdout).toMatch(/node 1 refused the credentials of user 'watcher' \(wrong user name or password\): check --user and NANOCDN_PASSWORD/);
    expect(wrong.code).toBe(1);
  });

  it("answers /status within seconds while the disk hangs, and says what it could not learn", async () => {
    const trace = await traceSyscalls(node.pid, join(node.data, "..", "statfs.trace"), ["statfs"], { delayMs: 20_000 });
    try {
      // Several at once, as from a monitor and a page: they share one statfs, so the others of libuv's threads stay free.
      const [status, page, cli, metrics] = await Promise.all([
        fetch(`${node.url}/status`, { headers: full }).then((r) => r.json()),
        fetch(`${node.url}/status`, { headers: { ...full, Accept: "text/html" } }).then((r) => r.text()),
        runCli(["status", "--config", node.configFile, "--user", MONITOR], { env: { NANOCDN_PASSWORD: MONITOR_PASSWORD } }),
        fetch(`${node.url}/metrics`, { headers: full }).then((r) => r.text()),
      ]);
      // No room known is no room: the disk-space alert fires, and the other metrics still answer.
      expect(sample(metrics, "nanocdn_store_free_bytes")).toBe(0);
      expect(sample(metrics, "nanocdn_own_files_complete")).toBe(1);
      const hung = `the free space of ${join(node.data, "files")} is unknown: statfs did not answer within 1 s (a hung disk?)`;
      expect(status.factsError).toBe(hung);
      expect(status.diskFreeBytes).toBeUndefined();
      expect(status.nodes[0]).toMatchObject({ node: "1", self: true, lastError: hung });
      expect(page).toContain("statfs did not answer within 1 s");
      expect(cli.stdout).toMatch(/^1\s+up, no facts/m);
      expect(cli.stdout).toContain(`node 1: ${hung}`);
      expect(cli.code).toBe(1);
      // The files are still served meanwhile.
      expect((await fetch(`${node.url}/1/pub/nope.txt`)).status).toBe(404);
      const started = (await trace.stop()).match(/statfs\(/g) ?? [];
      expect(started.length).toBeLessThanOrEqual(2);
    } finally {
      await trace.stop();
    }
    const recovered = await (await fetch(`${node.url}/status`, { headers: full })).json();
    expect(recovered.factsError).toBeUndefined();
    expect(recovered.diskFreeBytes).toBeGreaterThan(0);
  });

  it("answers /status on a kept-alive connection while the primary process is stopped, and says why it knows little", async () => {
    const agent = new Agent({ connections: 1 });
    try {
      // The primary accepts connections and hands them on: a stopped one hands on no new ones.
      expect((await fetch(`${node.url}/check/`, { dispatcher: agent } as RequestInit)).status).toBe(200);
      process.kill(node.pid, "SIGSTOP");
      try {
        const status = await (await fetch(`${node.url}/status`, { headers: full, dispatcher: agent } as RequestInit)).json();
        expect(status.factsError).toMatch(/^the node's primary process did not tell its facts within 2 s: it is stopped, overloaded, or waits on a hung disk$/);
        expect(status.version).toBeUndefined();
      } finally {
        process.kill(node.pid, "SIGCONT");
      }
    } finally {
      await agent.close();
    }
  });

  it("logs the client, the forwarded address from a trusted proxy, the user and the user agent", async () => {
    const headers = { "User-Agent": "access-line-test/1", "X-Forwarded-For": "203.0.113.7, 127.0.0.9" };
    const status = await rawRequest(node.url, "GET", "/status", { ...headers, ...monitor });
    await rawRequest(node.url, "GET", "/1/pub/counted.txt", headers);
    const page = await rawRequest(node.url, "GET", "/status", { ...headers, ...monitor, Accept: "text/html" });
    const metrics = await rawRequest(node.url, "GET", "/metrics", { ...headers, ...monitor });
    await eventually(async () => {
      const lines = node
        .output()
        .split("\n")
        .filter((l) => l.includes("access-line-test/1"))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ path: "/status", status: 200, client: "127.0.0.1", forwarded: "203.0.113.7", user: MONITOR }),
          expect.objectContaining({ path: "/1/pub/counted.txt", status: 200, client: "127.0.0.1", forwarded: "203.0.113.7" }),
          // The size of each answer, the page and the metrics included.
          expect.objectContaining({ path: "/status", bytes: Buffer.byteLength(status.body) }),
          expect.objectContaining({ path: "/status", bytes: Buffer.byteLength(page.body) }),
          expect.objectContaining({ path: "/metrics", bytes: Buffer.byteLength(metrics.body) }),
        ]),
      );
    });
  });
});

/** The samples of the counters and histograms in an exposition, by series. */
function cumulativeSamples(text: string): Map<string, number> {
  const names = [...text.matchAll(/^# TYPE (\S+) (counter|histogram)$/gm)].map((m) => m[1]!);
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const series = line.slice(0, line.lastIndexOf(" "));
    const name = series.split("{")[0]!;
    if (names.some((n) => [n, `${n}_bucket`, `${n}_sum`, `${n}_count`].includes(name))) samples.set(series, Number(line.slice(series.length + 1)));
  }
  return samples;
}

/** The counter and histogram series lower in `after` than in `before` (or gone), with both values. */
function decreases(before: string, after: string): string[] {
  const later = cumulativeSamples(after);
  return [...cumulativeSamples(before)]
    .filter(([series, value]) => !((later.get(series) ?? -1) >= value))
    .map(([series, value]) => `${series}: ${value} → ${later.get(series)}`);
}

/** A process's soft limit of open files. */
function openFilesLimit(pid: number): number {
  const line = readFileSync(`/proc/${pid}/limits`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("Max open files"))!;
  return Number(line.split(/ {2,}/)[1]);
}

describe("a node's metrics while its serving processes stall, die and are replaced", () => {
  const UPLOADS = 10;
  let node: NodeProcess;
  let startedAt: number;

  beforeAll(async () => {
    startedAt = Date.now() / 1000;
    node = await startNodeProcess({ config: { workers: 2 } });
    // A new connection each, so that both processes store some.
    for (let i = 0; i < UPLOADS; i++) expect((await rawRequest(node.url, "PUT", `/upload/pub/${i}.txt`, full, "x")).status).toBe(201);
  });

  afterAll(async () => {
    await node?.stop();
  });

  /** A scrape on a connection of its own; undefined when none answers in time (the connection went to a stopped process). */
  const scrape = async () => {
    const request = rawRequest(node.url, "GET", "/metrics", full);
    // One left waiting fails when the node stops, after the test.
    request.catch(() => {});
    const timeout = new Promise<undefined>((resolve) => setTimeout(resolve, 4000));
    const response = await Promise.race([request, timeout]);
    if (response) expect(response.status, response.body).toBe(200);
    return response?.body;
  };
  const servingProcesses = () => withChildren(node.pid).slice(1);

  it("reports the node's start time, and the open-files limit of a process instead of the sum of all", async () => {
    const text = (await scrape())!;
    expect(sample(text, "process_max_fds")).toBe(openFilesLimit(node.pid));
    expect(sample(text, "process_start_time_seconds")).toBeGreaterThanOrEqual(Math.floor(startedAt) - 1);
    expect(sample(text, "process_start_time_seconds")).toBeLessThanOrEqual(Date.now() / 1000);
    const check = await promtoolCheck(text);
    expect(check.output).toBe("");
  });

  it("answers with a stalled serving process's last counts, and no counter goes down", async () => {
    const before = (await scrape())!;
    expect(sample(before, "nanocdn_uploads_total")).toBe(UPLOADS);
    const [stalled] = servingProcesses();
    process.kill(stalled!, "SIGSTOP");
    try {
      const answered: string[] = [];
      // One scrape may go to the stopped process, and wait.
      for (let i = 0; i < 3; i++) {
        const text = await scrape();
        if (text !== undefined) answered.push(text);
      }
      expect(answered.length).toBeGreaterThanOrEqual(2);
      for (const after of answered) {
        expect(decreases(before, after)).toEqual([]);
        expect(sample(after, "nanocdn_uploads_total")).toBe(UPLOADS);
        expect(sample(after, "process_start_time_seconds")).toBe(sample(before, "process_start_time_seconds"));
      }
    } finally {
      process.kill(stalled!, "SIGCONT");
    }
  });

  it("keeps counting what a serving process counted once it was killed and replaced", async () => {
    const before = (await scrape())!;
    expect(sample(before, "nanocdn_uploads_total")).toBe(UPLOADS);
    const [victim] = servingProcesses();
    process.kill(victim!, "SIGKILL");
    await eventually(async () => {
      expect(servingProcesses()).toHaveLength(2);
      expect(servingProcesses()).not.toContain(victim);
    });
    const after = (await scrape())!;
    expect(decreases(before, after)).toEqual([]);
    expect(sample(after, "nanocdn_uploads_total")).toBe(UPLOADS);
    expect(sample(after, "process_start_time_seconds")).toBe(sample(before, "process_start_time_seconds"));
    expect(sample(after, "process_max_fds")).toBe(openFilesLimit(node.pid));
    const check = await promtoolCheck(after);
    expect(check.output).toBe("");
    expect(check.code).toBe(0);
  });
});

describe("monitoring configuration", () => {
  it("refuses a start with an entry that is no address or network", async () => {
    const { code, stderr } = await runCli(["serve", "--trusted-proxies", "10.0.0.0/33,proxy.example", "--monitor-users", "a,b"]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/trusted_proxies.*expected an IP address or a network/);
  });
});

describe("the README's monitoring examples", () => {
  it("gives alert rules that promtool accepts", async () => {
    const readme = await readFile(new URL("../../README.md", import.meta.url), "utf8");
    const section = readme.slice(readme.indexOf("## Monitoring"));
    const rules = [...section.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).find((block) => block.startsWith("groups:"));
    expect(rules).toBeDefined();
    const file = join(await mkdtemp(join(tmpdir(), "nanocdn-rules-")), "nanocdn.rules.yml");
    await writeFile(file, rules!);
    const result = spawnSync("promtool", ["check", "rules", file], { encoding: "utf8" });
    expect(result.stdout + result.stderr).toMatch(/SUCCESS: 7 rules found/);
    expect(result.status).toBe(0);
  });
});

describe("what /status tells a monitor user", () => {
  it("names no private file, where a full user sees which", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nanocdn-monitoring-"));
    const htpasswd = join(dir, "htpasswd");
    await writeHtpasswd(htpasswd, [bcryptLine(USER, PASSWORD), bcryptLine(MONITOR, MONITOR_PASSWORD)]);
    // A lone node scrubbing every second: what it finds damaged it cannot repair, and lists.
    const node = await startNodeProcess({ dir, config: { htpasswd, monitor_users: [MONITOR], scrub_interval: 1 } });
    try {
      for (const path of ["priv/invoices/acme corp.pdf", "pub/logo.png"]) {
        expect((await fetch(`${node.url}/upload/${path}`, { method: "PUT", body: "bytes", headers: full })).status).toBe(201);
        await flipByte(join(node.data, "files", "1", path));
      }
      const status = async (headers: Record<string, string>) =>
        (await (await fetch(`${node.url}/status`, { headers })).json()) as { scrub: { damaged: string[] } };
      const damaged = ["1/priv/invoices/acme corp.pdf", "1/pub/logo.png"];
      await eventually(async () => expect((await status(full)).scrub?.damaged?.sort()).toEqual(damaged), 30_000);
      const seen = await status(monitor);
      expect(seen.scrub.damaged.sort()).toEqual(["1/priv/…", "1/pub/logo.png"]);
      expect(JSON.stringify(seen)).not.toMatch(/invoices|acme/);
    } finally {
      await node.stop();
    }
  });
});

describe("a node whose files folder is gone from under it", () => {
  it("still answers /status and /metrics, saying its store fails, and keeps serving", async () => {
    // Two serving processes: the status comes from the primary, which must not fall with it.
    const node = await startNodeProcess({ config: { workers: 2 } });
    try {
      const files = join(node.data, "files");
      await rename(files, `${files}.away`);
      await eventually(async () => {
        const status = await fetch(`${node.url}/status`, { headers: full });
        expect(status.status).toBe(200);
        expect(((await status.json()) as { storeHealthy?: boolean }).storeHealthy).toBe(false);
      });
      const metrics = await fetch(`${node.url}/metrics`, { headers: full });
      expect(metrics.status).toBe(200);
      expect(sample(await metrics.text(), "nanocdn_store_free_bytes")).toBe(0);
      expect((await fetch(`${node.url}/check/`)).status).toBe(503);
      await rename(`${files}.away`, files);
      await eventually(async () => expect((await fetch(`${node.url}/check/`)).status).toBe(200));
    } finally {
      await node.stop();
    }
  });
});
