import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { promisify } from "node:util";
import { join, resolve } from "node:path";
import { build } from "esbuild";
import { describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "..");
const PORTABLE = ["src/handlers", "src/storage", "clients/typescript/src"];

async function sources(folder: string): Promise<string[]> {
  const entries = await readdir(join(ROOT, folder), { recursive: true });
  return entries.filter((f) => f.endsWith(".ts")).map((f) => join(folder, f));
}

describe("portable code (handlers, storage and the client run on workerd too)", () => {
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

/** A module that breaks the layering, and where it would sit. */
const VIOLATIONS: Record<string, string> = {
  "src/storage/probe.ts": 'import { createApp } from "../handlers/app.ts";\nexport { createApp };\n',
  "src/handlers/probe.ts": 'import { DiskStore } from "../adapters/node/disk/disk-store.ts";\nexport { DiskStore };\n',
  "src/handlers/probe-node.ts": 'import { readFile } from "node:fs/promises";\nexport { readFile };\n',
  "clients/typescript/src/probe.ts": 'import { Hono } from "hono";\nexport { Hono };\n',
  "clients/typescript/src/probe-server.ts": 'import { MemoryStore } from "../../../src/storage/memory-store.ts";\nexport { MemoryStore };\n',
};

describe("import direction (adapters → handlers → storage; the client apart)", () => {
  it("is enforced by the lint rules: each upward import is reported", async () => {
    // The project's own biome.json, applied to modules placed in a copy of the tree.
    const dir = await mkdtemp(join(tmpdir(), "nanocdn-layers-"));
    await copyFile(join(ROOT, "biome.json"), join(dir, "biome.json"));
    for (const [file, text] of Object.entries(VIOLATIONS)) {
      await mkdir(join(dir, file, ".."), { recursive: true });
      await writeFile(join(dir, file), text);
    }
    const biome = join(ROOT, "node_modules/.bin/biome");
    const { stdout } = await promisify(execFile)(biome, ["lint", "--vcs-enabled=false", "--reporter=json", "."], { cwd: dir }).catch(
      (error: { stdout: string }) => error,
    );
    const { diagnostics } = JSON.parse(stdout) as { diagnostics: { category: string; location: { path: string } }[] };
    const reported = diagnostics.filter((d) => d.category === "lint/style/noRestrictedImports").map((d) => d.location.path);
    expect(reported.sort()).toEqual(Object.keys(VIOLATIONS).sort());
  });
});
