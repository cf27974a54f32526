import { afterEach, describe, expect, it, vi } from "vitest";
import { StoreHealth } from "../../src/adapters/node/disk/store-health.ts";
import type { BlobStore } from "../../src/storage/blob-store.ts";
import { quiet } from "../helpers/quiet-log.ts";

describe("StoreHealth", () => {
  afterEach(() => vi.useRealTimers());

  it("keeps the verdict of the latest probe when an older one ends after it", async () => {
    vi.useFakeTimers();
    const probes: { resolve(): void; reject(error: Error): void }[] = [];
    const store = { probe: () => new Promise<void>((resolve, reject) => probes.push({ resolve, reject })) } as unknown as BlobStore;
    const health = new StoreHealth(store, quiet);
    // A probe of the broken disk, its calls stuck behind others; the disk is repaired, and a later probe passes.
    const older = health.check().catch(() => {});
    vi.advanceTimersByTime(300);
    const newer = health.check();
    probes[1]!.resolve();
    await newer;
    expect(health.healthy).toBe(true);
    probes[0]!.reject(new Error("ENOTDIR"));
    await older;
    expect(health.healthy).toBe(true);
  });
});
