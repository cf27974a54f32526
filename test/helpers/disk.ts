import { mkdir, readdir, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";

/** Every regular file below `root`, as '/'-separated paths relative to it. */
export async function listFiles(root: string): Promise<string[]> {
  try {
    const entries = await readdir(root, { recursive: true, withFileTypes: true });
    return entries
      .filter((e) => e.isFile())
      .map((e) => relative(root, join(e.parentPath, e.name)).split("\\").join("/"))
      .sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}

/**
 * What a node's data folder holds: blob keys under files/, plus `tmp/…` for
 * anything half-written. The files of the node's own periodic health probe,
 * which come and go in tmp/ every second, are not uploads and are left out.
 */
export async function storedKeys(data: string): Promise<string[]> {
  const tmp = (await listFiles(join(data, "tmp"))).filter((f) => !f.startsWith("probe-")).map((f) => `tmp/${f}`);
  return [...(await listFiles(join(data, "files"))).filter((f) => !f.startsWith(".probe-")), ...tmp];
}

export async function placeFile(path: string, body: string | Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, body);
}
