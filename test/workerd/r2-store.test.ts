import { env } from "cloudflare:test";
import { R2Store } from "../../src/adapters/worker/r2-store.ts";
import { describeBlobStore } from "../../src/storage/contract.ts";
import { listKeys } from "../helpers/r2-keys.ts";

const bucket = (env as unknown as { FILES: R2Bucket }).FILES;

describeBlobStore("R2Store (inside workerd)", async () => {
  await bucket.delete(await listKeys(bucket));
  return {
    store: new R2Store(bucket),
    // R2 has no temp files; what could stray is a probe object left behind.
    strays: async () => (await listKeys(bucket)).filter((k) => k.startsWith(".")),
  };
});
