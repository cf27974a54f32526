import { afterAll, beforeAll } from "vitest";
import { bcryptLine, PASSWORD, USER } from "../helpers/credentials.ts";
import { listKeys } from "../helpers/r2-keys.ts";
import { type RunningWorker, startWorker } from "../helpers/worker.ts";
import { URL_SIGNING_KEY_FILE } from "../helpers/signed-urls.ts";
import { type ApiTarget, describeHttpApi } from "./api-suite.ts";
import { describeLifecycle } from "./lifecycle-suite.ts";

const MAX = 1024 * 1024;
let worker: RunningWorker;
let target: ApiTarget;

beforeAll(async () => {
  worker = await startWorker({ NODE_ID: "1", MAX_UPLOAD_BYTES: String(MAX), HTPASSWD: bcryptLine(USER, PASSWORD), URL_SIGNING_SECRET: URL_SIGNING_KEY_FILE });
  target = {
    url: worker.url,
    nodeId: "1",
    maxUploadBytes: MAX,
    seesRawTarget: false,
    answersBeforeBody: false,
    seedLegacy: async (path, body) => {
      await worker.bucket.put(`legacy/${path}`, body);
    },
    storedKeys: () => listKeys(worker.bucket as Parameters<typeof listKeys>[0]),
  };
}, 60_000);

afterAll(async () => {
  await worker?.close();
});

describeHttpApi("workerd (R2 store)", () => target);
describeLifecycle("workerd", () => target);
