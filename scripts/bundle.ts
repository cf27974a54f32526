// Bundles the node's program (its CLI, all it imports, its npm packages) into
// one file, which bin/nanocdn.mjs runs. Node.js 20 has no compile cache, and a
// node loaded from some 460 modules of dist/ and node_modules/ spent about
// 0.45 s of CPU finding, reading and linking them before it listened: from
// the one file it starts with about 0.65 s of CPU instead of 1.1 (AMD EPYC,
// 2 cores). Not minified, so that stack traces in the log stay readable
// (minifying saved nothing measurable).
import { realpathSync } from "node:fs";
import { join, resolve } from "node:path";
import { build } from "esbuild";

const ROOT = resolve(import.meta.dirname, "..");

/**
 * Writes `<dist>/adapters/node/cli/nanocdn.mjs`: beside the compiled main.js,
 * so that the paths the code resolves from its own place (package.json, the
 * bin) hold in both. Resolves with the folders of the npm packages it holds
 * (whose licences travel with it).
 */
export async function bundleNode(dist = join(ROOT, "dist")): Promise<string[]> {
  const { metafile } = await build({
    entryPoints: [join(ROOT, "src/adapters/node/cli/main.ts")],
    outfile: join(dist, "adapters/node/cli/nanocdn.mjs"),
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    // CommonJS packages inside an ES module bundle call require() for Node's built-ins.
    banner: { js: 'import { createRequire as __nanocdnRequire } from "node:module";\nconst require = __nanocdnRequire(import.meta.url);' },
    logLevel: "warning",
    // The module paths in its comments are relative to this: the same wherever the build was started.
    absWorkingDir: ROOT,
    metafile: true,
  });
  const packages = new Set<string>();
  for (const input of Object.keys(metafile.inputs)) {
    // The innermost node_modules/<name> (or node_modules/@scope/<name>) of the path.
    const folder = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input)?.[1];
    if (folder) packages.add(resolve(ROOT, folder));
    // Code from anywhere else (a linked package) would travel without its licence.
    else if (!input.startsWith("src/")) throw new Error(`the bundle takes ${input}, which is neither nanocdn's source nor an npm package`);
  }
  return [...packages].sort();
}

// Run as a script (by a path that may go through a symlink), not imported.
if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === import.meta.filename) await bundleNode(process.argv[2]);
