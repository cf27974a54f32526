import { describeBlobStore } from "./contract.ts";
import { MemoryStore } from "../../src/storage/memory-store.ts";

describeBlobStore("MemoryStore", async () => ({ store: new MemoryStore() }));
