import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DiskStore } from "../../src/adapters/node/disk-store.ts";
import { describeBlobStore } from "../../src/storage/contract.ts";

describeBlobStore("DiskStore", async () => {
  const root = await mkdtemp(join(tmpdir(), "nanocdn-disk-"));
  const store = new DiskStore({ root });
  await store.init();
  return {
    store,
    strays: () => store.strays(),
    dispose: () => rm(root, { recursive: true, force: true }),
  };
});
