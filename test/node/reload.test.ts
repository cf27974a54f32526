import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { basic, bcryptLine, PASSWORD, USER } from "../helpers/credentials.ts";
import { eventually } from "../helpers/eventually.ts";
import { startNodeProcess } from "../helpers/node-process.ts";
import { withChildren } from "../helpers/processes.ts";
import { rawRequest } from "../helpers/raw-http.ts";
import { makeSelfSigned } from "../helpers/tls.ts";

describe("SIGHUP", () => {
  it("makes every serving process take the new log level and read the users again, and names keys that wait for a restart", async () => {
    const node = await startNodeProcess({
      config: { log_level: "warn", workers: 2 },
      // The helper's own log level would win over the file's.
      env: { NANOCDN_LOG_LEVEL: undefined as unknown as string },
    });
    try {
      // A connection each, so that requests reach both serving processes.
      const read = () =>
        new Promise<void>((resolve, reject) => get(`${node.url}/1/pub/none.txt`, { agent: false }, (r) => r.resume().on("end", resolve)).on("error", reject));
      await read();
      expect(node.output()).not.toContain('"msg":"request"');

      const config = await readFile(node.configFile, "utf8");
      await writeFile(
        node.configFile,
        config.replace('log_level = "warn"', 'log_level = "info"').replace(/max_upload_bytes = \d+|$/, "max_upload_bytes = 5\n"),
      );
      await writeFile(join(node.data, "..", "htpasswd"), `${bcryptLine(USER, PASSWORD)}\n${bcryptLine("newcomer", "pw")}\n`);
      node.child.kill("SIGHUP");
      // Both serving processes read the users file without waiting for a request. Counted by
      // process, not by line: one that was still starting when the file changed reads it twice.
      await eventually(async () =>
        expect(new Set([...node.output().matchAll(/"pid":(\d+),[^\n]*"users":2,"msg":"htpasswd loaded"/g)].map((m) => m[1])).size).toBe(2),
      );
      await eventually(async () => expect(node.output()).toMatch(/"keys":\["max_upload_bytes"\],"msg":"these changed keys take effect at the next restart"/));
      // Requests on fresh connections reach both processes: each now writes its access log.
      await eventually(async () => {
        for (let i = 0; i < 10; i++) await read();
        expect(new Set([...node.output().matchAll(/"pid":(\d+),"method":"GET"/g)].map((m) => m[1])).size).toBe(2);
      });
      const upload = await fetch(`${node.url}/upload/pub/hello.txt`, {
        method: "PUT",
        body: "longer than five",
        headers: { Authorization: basic("newcomer", "pw") },
      });
      expect(upload.status).toBe(201);
    } finally {
      await node.stop();
    }
  });

  it("makes every serving process read the TLS files again", async () => {
    const tls = makeSelfSigned(await mkdtemp(join(tmpdir(), "nanocdn-hup-")), "hup");
    const node = await startNodeProcess({ config: { tls_cert: tls.cert, tls_key: tls.key, workers: 2 }, waitFor: "listening" });
    try {
      // The files are unchanged, so only the signal, not the watch for renewals, reads them.
      await eventually(async () => expect(node.output()).toContain("nanocdn node listening"));
      expect(node.output()).not.toContain("TLS certificate reloaded");
      node.child.kill("SIGHUP");
      await eventually(async () => expect(node.output().match(/"msg":"TLS certificate reloaded"/g)).toHaveLength(2));
    } finally {
      await node.stop();
    }
  });
});

describe("a serving process that replaces one that died", () => {
  it("runs with the configuration the node started with, not the file as edited since", async () => {
    const node = await startNodeProcess({ config: { workers: 2, max_upload_bytes: 1000 } });
    try {
      // Edited for the next restart: another node id and a smaller limit.
      const file = await readFile(node.configFile, "utf8");
      await writeFile(node.configFile, `${file.replace(/^(node|max_upload_bytes)\s*=.*$/gm, "")}\nnode = "7"\nmax_upload_bytes = 3\n`);
      const serving = () => withChildren(node.pid).slice(1);
      // Started: both listen (a death before that fails the start instead).
      await eventually(async () => expect(node.output()).toContain("nanocdn node listening"));
      const [victim, survivor] = serving();
      process.kill(victim!, "SIGKILL");
      let replacement: number | undefined;
      await eventually(async () => {
        replacement = serving().find((pid) => pid !== victim && pid !== survivor);
        expect(serving()).toHaveLength(2);
        expect(replacement).toBeDefined();
      });
      // A new connection each, until the replacement (its pid in the access log) has taken one.
      const answers: unknown[] = [];
      await eventually(async () => {
        const i = answers.length;
        const answer = await rawRequest(node.url, "PUT", `/upload/pub/after-${i}.txt`, { Authorization: basic() }, "ten bytes!");
        answers.push([answer.status, answer.headers.location]);
        expect(node.output()).toContain(`"pid":${replacement},"method":"PUT"`);
      });
      expect(answers).toEqual(answers.map((_, i) => [201, `/1/pub/after-${i}.txt`]));
    } finally {
      await node.stop();
    }
  });
});
