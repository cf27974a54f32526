import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";
import { placeFile, storedKeys } from "../helpers/disk.ts";
import { type NodeProcess, startNodeProcess } from "../helpers/node-process.ts";
import type { Runtime } from "../helpers/runtimes.ts";
import { URL_SIGNING_KEY_FILE } from "../helpers/signed-urls.ts";
import { type ApiTarget, describeHttpApi } from "./api-suite.ts";
import { describeLifecycle } from "./lifecycle-suite.ts";

const MAX = 1024 * 1024;

/** Runs the HTTP suites against `nanocdn serve` on `runtime`, with the disk store and two serving processes. */
export function describeNodeProcess(runtime: Runtime, title: string): void {
  let node: NodeProcess;
  let target: ApiTarget;

  beforeAll(async () => {
    // Two serving processes: every answer must hold whichever process a request reaches.
    const keyFile = join(await mkdtemp(join(tmpdir(), "nanocdn-keys-")), "url-signing.keys");
    await writeFile(keyFile, URL_SIGNING_KEY_FILE, { mode: 0o600 });
    node = await startNodeProcess({ config: { node: "1", max_upload_bytes: MAX, workers: 2, url_signing_secret_file: keyFile }, runtime });
    target = {
      url: node.url,
      nodeId: "1",
      maxUploadBytes: MAX,
      seesRawTarget: true,
      answersBeforeBody: true,
      seedLegacy: (path, body) => placeFile(join(node.data, "files", "legacy", path), body),
      storedKeys: () => storedKeys(node.data),
    };
  });

  afterAll(async () => {
    await node?.stop();
  });

  describeHttpApi(title, () => target);
  describeLifecycle(title, () => target);
}
