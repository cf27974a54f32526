import { env } from "cloudflare:test";
import { R2Store } from "../../src/adapters/worker/r2-store.ts";
import { describeBlobStore } from "../../src/storage/contract.ts";

const bucket = (env as unknown as { FILES: R2Bucket }).FILES;

async function allKeys(): Promise<string[]> {
  const keys: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await bucket.list({ cursor });
    keys.push(...page.objects.map((o) => o.key));
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return keys;
}

describeBlobStore("R2Store (inside workerd)", async () => {
  await bucket.delete(await allKeys());
  return {
    store: new R2Store(bucket),
    // R2 has no temp files; what could stray is a probe object left behind.
    strays: async () => (await allKeys()).filter((k) => k.startsWith(".")),
  };
});
