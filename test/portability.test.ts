import { readdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { build } from "esbuild";
import { describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "..");
const PORTABLE = ["src/handlers", "src/storage"];

async function sources(folder: string): Promise<string[]> {
  const entries = await readdir(join(ROOT, folder), { recursive: true });
  return entries.filter((f) => f.endsWith(".ts")).map((f) => join(folder, f));
}

describe("portable code (handlers and storage run on workerd too)", () => {
  it("imports no node: module", async () => {
    const offenders: string[] = [];
    for (const folder of PORTABLE) {
      for (const file of await sources(folder)) {
        const text = await readFile(join(ROOT, file), "utf8");
        for (const match of text.matchAll(/(?:from\s+|import\s*\(\s*|require\s*\(\s*)["'](node:[^"']+)["']/g)) {
          offenders.push(`${file}: ${match[1]}`);
        }
      }
    }
    expect(offenders).toEqual([]);
  });

  it("bundles for a platform without Node built-ins, dependencies included", async () => {
    const entryPoints = (await Promise.all(PORTABLE.map(sources))).flat().map((f) => join(ROOT, f));
    // A dependency that needs a Node built-in (fs, crypto, stream …) fails to
    // resolve here, however deep in the import graph it sits.
    const result = await build({
      entryPoints,
      bundle: true,
      write: false,
      outdir: "/nonexistent",
      platform: "neutral",
      format: "esm",
      mainFields: ["module", "main"],
      external: ["vitest"],
      logLevel: "silent",
    }).catch((error: { errors?: { text: string }[] }) => ({ errors: error.errors ?? [{ text: String(error) }] }));
    expect(result.errors.map((e) => e.text)).toEqual([]);
  });
});
