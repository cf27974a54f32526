import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { eventually } from "../helpers/eventually.ts";

const LOGGER = resolve(import.meta.dirname, "../../dist/adapters/node/process/logger.js");

// Writes 50 MB of access-log lines at once into its stdout, then says how much of its memory they still hold.
const WRITER = `
const { createLogger } = await import(${JSON.stringify(LOGGER)});
const log = createLogger("info");
const entry = { method: "GET", path: "/1/pub/" + "x".repeat(150), status: 200, bytes: 1, ms: 0, node: "1" };
const retained = () => (globalThis.gc(), process.memoryUsage().heapUsed);
const before = retained();
for (let i = 0; i < 200000; i++) log.request(entry);
process.stderr.write(JSON.stringify({ grownMiB: (retained() - before) / 2 ** 20 }) + "\\n");
setTimeout(() => {}, 8000);
`;

describe("log output", () => {
  it("keeps what a stalled reader cannot take within a bound, drops the rest and says how many lines", async () => {
    const child = spawn(process.execPath, ["--expose-gc", "--input-type=module", "-e", WRITER], { stdio: ["ignore", "pipe", "pipe"] });
    try {
      // Nobody reads stdout yet: the pipe fills at once, and the lines wait in the writer's memory.
      child.stdout.pause();
      let stderr = "";
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      await eventually(async () => expect(stderr).toContain("grownMiB"));
      const { grownMiB } = JSON.parse(stderr) as { grownMiB: number };
      // 50 MB of lines without the bound; 16 MiB waiting with it.
      expect(grownMiB).toBeLessThan(40);
      let stdout = "";
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      child.stdout.resume();
      await eventually(async () => expect(stdout).toContain("lines dropped"));
      const report = JSON.parse(stdout.split("\n").find((line) => line.includes("lines dropped"))!) as { level: string; lines: number };
      expect(report.level).toBe("warn");
      expect(report.lines).toBeGreaterThan(50_000);
    } finally {
      child.kill("SIGKILL");
    }
  });
});
