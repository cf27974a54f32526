// A hot file's lookup in a node's memory cache, in this process: with one
// entry, and with the cache full. Deterministic where the full-cache GET row
// is not: what a hit costs there depends on the history of V8's hash table
// (see BENCHMARKS.md, "a hot file in a full memory cache").

import { DEFAULT_MEMORY_CACHE_BYTES, DEFAULT_MEMORY_CACHE_FILE_BYTES } from "../src/adapters/node/cli/config.ts";
import { CachingStore, cacheEntries } from "../src/storage/caching-store.ts";
import { MemoryStore } from "../src/storage/memory-store.ts";

/** How many files a serving process's cache keeps with the defaults. */
export const CACHE_ENTRIES = cacheEntries(DEFAULT_MEMORY_CACHE_BYTES);
/** Names that hold nothing, a quarter more than that: reading them fills it. */
export const FILL_NAMES = Math.ceil(CACHE_ENTRIES * 1.25);
const HOT = "1/pub/bench/hot.bin";
const PEEKS = 200_000;

export interface HotLookup {
  /** Nanoseconds per `peek` of the hot file. */
  oneEntryNs: number;
  fullNs: number;
}

function nsPerPeek(store: CachingStore): number {
  for (let i = 0; i < PEEKS / 10; i++) store.peek(HOT);
  const started = process.hrtime.bigint();
  for (let i = 0; i < PEEKS; i++) if (!store.peek(HOT)) throw new Error("the hot file fell out of the cache");
  return Number(process.hrtime.bigint() - started) / PEEKS;
}

export async function measureHotLookup(): Promise<HotLookup> {
  const store = new CachingStore(new MemoryStore(), {
    maxBytes: DEFAULT_MEMORY_CACHE_BYTES,
    maxFileBytes: DEFAULT_MEMORY_CACHE_FILE_BYTES,
    revalidateMs: 60_000,
  });
  await store.create(HOT, new Blob([new Uint8Array(4096)]).stream());
  await store.open(HOT);
  const oneEntryNs = nsPerPeek(store);
  // Names that hold nothing fill it, as reads of many files do; then the hot file is read again.
  for (let i = 0; i < FILL_NAMES; i++) await store.head(`1/pub/bench/absent/${i}.bin`);
  await store.open(HOT);
  return { oneEntryNs, fullNs: nsPerPeek(store) };
}
