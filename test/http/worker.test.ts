import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { basic, bcryptLine, PASSWORD, USER } from "../helpers/credentials.ts";
import { listKeys } from "../helpers/r2-keys.ts";
import { type RunningWorker, startWorker } from "../helpers/worker.ts";
import { URL_SIGNING_KEY_FILE } from "../helpers/signed-urls.ts";
import { type ApiTarget, describeHttpApi } from "./api-suite.ts";
import { describeLifecycle } from "./lifecycle-suite.ts";

const MAX = 1024 * 1024;
const MONITOR = "watcher";
const MONITOR_PASSWORD = "watching only";
let worker: RunningWorker;
let target: ApiTarget;

beforeAll(async () => {
  worker = await startWorker({
    NODE_ID: "1",
    MAX_UPLOAD_BYTES: String(MAX),
    HTPASSWD: `${bcryptLine(USER, PASSWORD)}\n${bcryptLine(MONITOR, MONITOR_PASSWORD)}\n`,
    MONITOR_USERS: MONITOR,
    URL_SIGNING_SECRET: URL_SIGNING_KEY_FILE,
  });
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

describe("workerd's bindings", () => {
  it("gives MONITOR_USERS no right but to read /status", async () => {
    const monitor = { Authorization: basic(MONITOR, MONITOR_PASSWORD) };
    const upload = await fetch(`${worker.url}/upload/pub/by-monitor.txt`, { method: "PUT", body: "x", headers: monitor });
    expect(upload.status).toBe(403);
    expect((await fetch(`${worker.url}/status`, { headers: monitor })).status).toBe(200);
    expect(await listKeys(worker.bucket as Parameters<typeof listKeys>[0])).not.toContain("1/pub/by-monitor.txt");
  });

  it("keeps no metrics: /metrics answers 404, to a monitor user too", async () => {
    for (const headers of [{ Authorization: basic(MONITOR, MONITOR_PASSWORD) }, { Authorization: basic() }]) {
      const answer = await fetch(`${worker.url}/metrics`, { headers });
      expect(answer.status).toBe(404);
      await answer.body?.cancel();
    }
  });

  it("answers every request with a JSON 500 while a binding is wrong, saying which in the log only", async () => {
    const wrong = await startWorker({ MAX_UPLOAD_BYTES: "lots" });
    try {
      for (const path of ["/check/", "/1/pub/a.txt"]) {
        const answer = await fetch(wrong.url + path);
        expect([answer.status, ((await answer.json()) as { error: string }).error]).toEqual([500, "internal_error"]);
      }
    } finally {
      await wrong.close();
    }
  });
});
describeLifecycle("workerd", () => target);
