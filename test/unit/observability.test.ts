import { beforeEach, describe, expect, it } from "vitest";
import { trustedProxies } from "../../src/adapters/node/process/trusted-proxies.ts";
import { forwardedClient } from "../../src/handlers/access-log.ts";
import { createApp } from "../../src/handlers/app.ts";
import { renderStatusPage } from "../../src/handlers/status-page.ts";
import { MemoryStore } from "../../src/storage/memory-store.ts";
import { quiet } from "../helpers/quiet-log.ts";
import { AUTH, InProcessCluster } from "./in-process-cluster.ts";

/** The value of one sample in a Prometheus text exposition. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("what the handlers count", () => {
  let cluster: InProcessCluster;
  beforeEach(() => {
    cluster = new InProcessCluster(["1", "2"]);
  });

  it("counts an upload passed to a peer where its store failed, and the stored upload where it landed", async () => {
    cluster.node("1").healthy = false;
    const created = await cluster.request("1", "/upload/pub/a.txt", { method: "PUT", body: "a", headers: { Authorization: AUTH } });
    expect(created.status).toBe(201);
    const first = (await cluster.node("1").metrics.exposition())!;
    const second = (await cluster.node("2").metrics.exposition())!;
    expect(sample(first, "nanocdn_uploads_failed_over_total")).toBe(1);
    expect(sample(first, "nanocdn_uploads_total")).toBe(0);
    expect(sample(second, "nanocdn_uploads_total")).toBe(1);
    expect(sample(first, 'nanocdn_http_requests_total{method="PUT",status="2xx"}')).toBe(1);
  });

  it("counts the body bytes a GET sends, and none for a HEAD, which declares the length only", async () => {
    await cluster.place("1", "1/pub/twelve.txt", "twelve bytes");
    const sent = async () => sample((await cluster.node("1").metrics.exposition())!, "nanocdn_http_sent_bytes_total")!;
    const before = await sent();
    expect(await (await cluster.request("1", "/1/pub/twelve.txt")).text()).toBe("twelve bytes");
    expect(await sent()).toBe(before + 12);
    const head = await cluster.request("1", "/1/pub/twelve.txt", { method: "HEAD" });
    expect(head.headers.get("Content-Length")).toBe("12");
    expect(await sent()).toBe(before + 12);
  });

  it("counts deletes and answers by status class", async () => {
    await cluster.place("1", "1/pub/gone.txt", "x");
    expect((await cluster.request("1", "/1/pub/gone.txt", { method: "DELETE", headers: { Authorization: AUTH } })).status).toBe(204);
    expect((await cluster.request("1", "/1/pub/gone.txt")).status).toBe(404);
    const text = (await cluster.node("1").metrics.exposition())!;
    expect(sample(text, "nanocdn_deletes_total")).toBe(1);
    expect(sample(text, 'nanocdn_http_requests_total{method="DELETE",status="2xx"}')).toBe(1);
    expect(sample(text, 'nanocdn_http_requests_total{method="GET",status="4xx"}')).toBe(1);
    expect(sample(text, "nanocdn_http_request_duration_seconds_count")).toBe(2);
  });
});

describe("the status page", () => {
  it("escapes what it shows, and marks a node down", () => {
    const html = renderStatusPage(
      {
        node: "1",
        nodes: [
          { node: "1", self: true, up: true, version: "1.0.0" },
          { node: "2", up: false, since: "2026-01-01T00:00:00.000Z", lastError: "<script>alert(1)</script>" },
        ],
      },
      new Date(),
    );
    expect(html).not.toContain("<script>");
    expect(html).toContain("&lt;script&gt;");
    expect(html).toContain('<tr data-node="2" data-up="false">');
    expect(html).toMatch(/<title>[^<]*1 of 2 nodes down/);
  });
});

describe("the status a monitor user reads", () => {
  const secret = ["invoices", "acme", "Ab12Cd", "wife"];
  const facts = {
    peers: [{ id: "2", up: false, since: "2026-12-02T05:00:00.000Z", lastError: 'GET /check/ failed: "1/priv/invoices/acme.pdf"' }],
    replication: [
      {
        peer: "2",
        backlog: 3,
        stuck: ["1/priv/invoices/acme corp.pdf", '1/priv/notes/"wife".txt', "1/pub/logo.png"],
        lastError: 'rsync exit 23: rename "/1/.nanocdn-rsync-tmp/.acme.pdf.Ab12Cd" -> "1/priv/invoices/acme.pdf": Permission denied (13)',
      },
    ],
    scrub: { damaged: ["1/priv/invoices/acme.pdf"], unreadable: ["1/priv/invoices/ (EACCES)"], damagedCount: 1 },
  };
  const users = new Map([
    ["alice", "full"],
    ["watcher", "watch"],
  ]);
  const app = createApp({
    nodeId: "1",
    store: new MemoryStore(),
    credentials: { verify: async (user, password) => users.get(user) === password },
    monitorUsers: ["watcher"],
    log: quiet,
    accessLog: false,
    status: async () => structuredClone(facts),
  });
  const read = (user: string, accept = "application/json") =>
    app.request("/status", { headers: { Authorization: `Basic ${btoa(`${user}:${users.get(user)}`)}`, Accept: accept } });

  it("names no private file, in lists, errors, quoted temporary names or the page; a full user reads them all", async () => {
    const seen = (await (await read("watcher")).json()) as typeof facts;
    expect(seen.replication[0]!.stuck).toEqual(["1/priv/…", "1/priv/…", "1/pub/logo.png"]);
    expect(seen.scrub).toEqual({ damaged: ["1/priv/…"], unreadable: ["1/priv/…"], damagedCount: 1 });
    expect(seen.replication[0]!.lastError).toBe('rsync exit 23: rename "…" -> "…": Permission denied (13)');
    const page = await (await read("watcher", "text/html")).text();
    for (const told of [JSON.stringify(seen), page]) for (const word of secret) expect(told).not.toContain(word);
    const whole = await (await read("alice")).text();
    for (const word of secret) expect(whole).toContain(word);
  });
});

describe("trusted proxies", () => {
  it("believes X-Forwarded-For only from a trusted address, and takes the right-most untrusted hop", () => {
    const trusted = trustedProxies(["10.0.0.0/8", "::1", "192.0.2.1"]);
    expect(trusted("10.1.2.3")).toBe(true);
    expect(trusted("::ffff:10.1.2.3")).toBe(true);
    expect(trusted("::1")).toBe(true);
    expect(trusted("192.0.2.2")).toBe(false);
    expect(trusted("not an address")).toBe(false);
    expect(trustedProxies([])("10.1.2.3")).toBe(false);
    expect(forwardedClient("10.0.0.1", "1.1.1.1, 198.51.100.4, 10.0.0.2", trusted)).toBe("198.51.100.4");
    expect(forwardedClient("10.0.0.1", "10.0.0.3", trusted)).toBe("10.0.0.3");
    expect(forwardedClient("10.0.0.1", undefined, trusted)).toBeUndefined();
    expect(forwardedClient("192.0.2.2", "198.51.100.4", trusted)).toBeUndefined();
  });
});
