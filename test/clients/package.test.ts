import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PASSWORD, USER } from "../helpers/credentials.ts";
import { type NodeProcess, startNodeProcess } from "../helpers/node-process.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const CLIENT_PACKAGE = join(ROOT, "clients/typescript");
const run = promisify(execFile);
const NPM_QUIET = ["--offline", "--no-audit", "--no-fund", "--loglevel=error"];

/** Uploads and reads back a file with the client imported as `specifier`, in plain Node (no TypeScript loader). */
async function roundTrip(specifier: string, cwd: string, node: NodeProcess, path: string): Promise<string> {
  const script = `
    import { NanoCdnClient } from ${JSON.stringify(specifier)};
    const cdn = new NanoCdnClient({ nodes: [process.env.NODE_URL], credentials: { user: process.env.CDN_USER, password: process.env.CDN_PASSWORD } });
    const { name } = await cdn.put(${JSON.stringify(path)}, "from plain node", { namespace: "pub" });
    console.log(name, await (await cdn.get(name)).text());
  `;
  const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], {
    cwd,
    env: { ...process.env, NODE_OPTIONS: "", NODE_URL: node.url, CDN_USER: USER, CDN_PASSWORD: PASSWORD },
  });
  return stdout.trim();
}

async function emptyProject(dir: string): Promise<void> {
  await writeFile(join(dir, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
}

describe("the published client", () => {
  let node: NodeProcess;
  let dir: string;
  beforeAll(async () => {
    // dist/ is what `npm ci` builds (prepare); the test run's global set-up builds it again.
    [node, dir] = await Promise.all([startNodeProcess(), mkdtemp(join(tmpdir(), "nanocdn-client-package-"))]);
  }, 60_000);
  afterAll(async () => {
    await node?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("imports as nanocdn/client from the server package, in plain Node, and works", async () => {
    expect(await roundTrip("nanocdn/client", ROOT, node, "packaged.txt")).toBe("/1/pub/packaged.txt from plain node");
  });

  it("packs as nanocdn-client without dependencies, and installs from its tarball and from its folder alone", async () => {
    // The test run's global set-up built dist/; packing must not rebuild it under other tests that import it.
    const { stdout } = await run("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", dir, ...NPM_QUIET], { cwd: CLIENT_PACKAGE });
    const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
    const tarball = join(dir, packed!.filename);
    expect(packed!.files.map((f) => f.path)).toContain("dist/index.d.ts");
    const { stdout: manifest } = await run("tar", ["-xzOf", tarball, "package/package.json"]);
    const published = JSON.parse(manifest) as Record<string, unknown>;
    expect(published).toMatchObject({ name: "nanocdn-client", type: "module" });
    for (const field of ["dependencies", "peerDependencies", "optionalDependencies", "bundleDependencies"]) {
      expect(published[field], field).toBeUndefined();
    }

    for (const [project, source] of [
      ["from-tarball", tarball],
      ["from-folder", CLIENT_PACKAGE],
    ] as const) {
      const app = join(dir, project);
      await mkdir(app);
      await emptyProject(app);
      await run("npm", ["install", ...NPM_QUIET, source], { cwd: app });
      // Nothing came along with it.
      expect(
        (await readdir(join(app, "node_modules"))).filter((n) => !n.startsWith(".")),
        project,
      ).toEqual(["nanocdn-client"]);
      expect(await roundTrip("nanocdn-client", app, node, `${project}.txt`)).toBe(`/1/pub/${project}.txt from plain node`);
    }
  }, 60_000);
});
