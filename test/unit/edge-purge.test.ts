import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { cacheTagOf } from "../../src/adapters/cache-tag.ts";
import { PURGE_DELAY_MS } from "../../src/adapters/cache-tag.ts";
import { EdgePurge } from "../../src/adapters/node/process/edge-purge.ts";
import type { Logger } from "../../src/handlers/logger.ts";
import { type Answer, FAILING, PURGED, REFUSED, responseTo, SLOW_DOWN } from "../helpers/cloudflare-api.ts";

/** Cloudflare's API as the purge meets it: the answers in turn (the last from then on), and when each request came. */
function api(...answers: Answer[]) {
  const requests: { at: number; tags: string[]; authorization: string }[] = [];
  const fetch = (async (_url: string, init: RequestInit) => {
    requests.push({ at: Date.now(), tags: JSON.parse(init.body as string).tags, authorization: new Headers(init.headers).get("Authorization") ?? "" });
    return responseTo(answers[Math.min(requests.length, answers.length) - 1]!);
  }) as unknown as typeof globalThis.fetch;
  return { fetch, requests };
}
const slowDown = (seconds: number): Answer => ({ ...SLOW_DOWN, headers: { "Retry-After": String(seconds) } });

describe("edge purges (Cloudflare's API stood in for, the clock faked)", () => {
  let logged: string[];
  const log: Logger = { info: (_f, m) => logged.push(`info ${m}`), warn: (_f, m) => logged.push(`warn ${m}`), error: (_f, m) => logged.push(`error ${m}`) };
  const purgeWith = (stand: { fetch: typeof fetch }, maxAgeMs = 3600_000) =>
    new EdgePurge({ zoneId: "z", token: "secret-token", api: "https://api.example", timeoutMs: 1000, maxAgeMs, fetch: stand.fetch }, log);
  const tag = (path: string) => cacheTagOf(path);
  let start: number;
  beforeEach(() => {
    vi.useFakeTimers();
    start = Date.now();
    logged = [];
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  const at = (ms: number) => vi.advanceTimersByTimeAsync(start + ms - Date.now());

  it("purges each file two seconds after its own delete, with whatever else is due then, in one request", async () => {
    const stand = api(PURGED);
    const purge = purgeWith(stand);
    await purge.add("/1/pub/a.png");
    await purge.add("/1/pub/b.png");
    await at(1000);
    await purge.add("/1/pub/c.png");
    await at(PURGE_DELAY_MS - 1);
    expect(stand.requests).toEqual([]);
    await at(PURGE_DELAY_MS);
    expect(stand.requests).toEqual([
      { at: start + PURGE_DELAY_MS, tags: [await tag("/1/pub/a.png"), await tag("/1/pub/b.png")], authorization: "Bearer secret-token" },
    ]);
    // c was deleted a second later: it waits its own two seconds.
    await at(1000 + PURGE_DELAY_MS);
    expect(stand.requests.map((r) => [r.at - start, r.tags])).toEqual([
      [PURGE_DELAY_MS, [await tag("/1/pub/a.png"), await tag("/1/pub/b.png")]],
      [1000 + PURGE_DELAY_MS, [await tag("/1/pub/c.png")]],
    ]);
    expect(logged).toEqual(["info deleted files purged from the edge's caches", "info deleted files purged from the edge's caches"]);
  });

  it("names at most 100 files a request, the next a second later", async () => {
    const stand = api(PURGED);
    const purge = purgeWith(stand);
    for (let i = 0; i < 150; i++) await purge.add(`/1/pub/${i}.png`);
    await at(PURGE_DELAY_MS + 1000);
    expect(stand.requests.map((r) => [r.at - start, r.tags.length])).toEqual([
      [PURGE_DELAY_MS, 100],
      [PURGE_DELAY_MS + 1000, 50],
    ]);
  });

  it("waits as long as Retry-After says, and keeps requests that far apart for a while", async () => {
    const stand = api(slowDown(30), PURGED);
    const purge = purgeWith(stand);
    await purge.add("/1/pub/a.png");
    await at(PURGE_DELAY_MS + 29_999);
    expect(stand.requests).toHaveLength(1);
    await at(PURGE_DELAY_MS + 30_000);
    expect(stand.requests).toHaveLength(2);
    expect(stand.requests[1]!.tags).toEqual([await tag("/1/pub/a.png")]);
    // The next request goes half that long after this one, then a quarter, back to one second.
    await purge.add("/1/pub/b.png");
    await at(PURGE_DELAY_MS + 30_000 + 14_999);
    expect(stand.requests).toHaveLength(2);
    await at(PURGE_DELAY_MS + 30_000 + 15_000);
    expect(stand.requests).toHaveLength(3);
    expect(logged[0]).toBe("warn Cloudflare put off purging deleted files: trying again later");
  });

  it("backs off on failures without Retry-After, while a refusal drops its purges and delays nothing", async () => {
    const stand = api(FAILING, FAILING, PURGED, REFUSED, PURGED);
    const purge = purgeWith(stand);
    await purge.add("/1/pub/a.png");
    await at(PURGE_DELAY_MS + 5000 + 10_000);
    expect(stand.requests.map((r) => r.at - start)).toEqual([PURGE_DELAY_MS, PURGE_DELAY_MS + 5000, PURGE_DELAY_MS + 15_000]);
    await purge.add("/1/pub/b.png");
    await at(PURGE_DELAY_MS + 15_000 + PURGE_DELAY_MS);
    expect(stand.requests).toHaveLength(4);
    expect(logged.at(-1)).toBe("error Cloudflare refused to purge deleted files: other locations may serve them until their max-age ends");
    // Refused, not failed: b is not asked for again, and the next one goes at its time.
    await purge.add("/1/pub/c.png");
    await at(PURGE_DELAY_MS + 15_000 + 2 * PURGE_DELAY_MS);
    expect(stand.requests).toHaveLength(5);
    expect(stand.requests[4]!.tags).toEqual([await tag("/1/pub/c.png")]);
  });

  it("gives up purges older than the cache's max-age: their copies have expired by then", async () => {
    const stand = api(FAILING);
    const purge = purgeWith(stand, 20_000);
    await purge.add("/1/pub/a.png");
    await at(60_000);
    expect(logged).toContain("warn edge purges given up: their copies have expired meanwhile");
    const asked = stand.requests.length;
    await at(600_000);
    expect(stand.requests).toHaveLength(asked);
  });

  it("sends what waits at a graceful stop, due or not", async () => {
    const stand = api(PURGED);
    const purge = purgeWith(stand);
    await purge.add("/1/pub/a.png");
    const stopping = purge.stop();
    await vi.advanceTimersByTimeAsync(0);
    await stopping;
    expect(stand.requests.map((r) => [r.at - start, r.tags])).toEqual([[0, [await tag("/1/pub/a.png")]]]);
  });
});
