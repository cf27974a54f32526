import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { basic, bcryptLine, PASSWORD, USER } from "../helpers/credentials.ts";
import { eventually } from "../helpers/eventually.ts";
import { startNodeProcess } from "../helpers/node-process.ts";

describe("SIGHUP", () => {
  it("makes every serving process take the new log level and read the users again, and names keys that wait for a restart", async () => {
    const node = await startNodeProcess({
      config: { log_level: "warn", workers: 2 },
      // The helper's own log level would win over the file's.
      env: { NANOCDN_LOG_LEVEL: undefined as unknown as string },
    });
    try {
      const read = () => fetch(`${node.url}/1/pub/none.txt`).then((r) => r.body?.cancel());
      await read();
      expect(node.output()).not.toContain('"msg":"request"');

      const config = await readFile(node.configFile, "utf8");
      await writeFile(node.configFile, config.replace('log_level = "warn"', 'log_level = "info"').replace(/max_upload_bytes = \d+|$/, "max_upload_bytes = 5\n"));
      await writeFile(join(node.data, "..", "htpasswd"), `${bcryptLine(USER, PASSWORD)}\n${bcryptLine("newcomer", "pw")}\n`);
      node.child.kill("SIGHUP");
      // Both serving processes read the users file without waiting for a request.
      await eventually(async () => expect(node.output().match(/"users":2,"msg":"htpasswd loaded"/g)).toHaveLength(2));
      expect(node.output()).toMatch(/"keys":\["max_upload_bytes"\],"msg":"these changed keys take effect at the next restart"/);
      // Requests on fresh connections reach both processes: each now writes its access log.
      await eventually(async () => {
        for (let i = 0; i < 10; i++) await read();
        expect(new Set([...node.output().matchAll(/"pid":(\d+),"method":"GET"/g)].map((m) => m[1])).size).toBe(2);
      });
      const upload = await fetch(`${node.url}/upload/pub/hello.txt`, { method: "PUT", body: "longer than five", headers: { Authorization: basic("newcomer", "pw") } });
      expect(upload.status).toBe(201);
    } finally {
      await node.stop();
    }
  });
});
