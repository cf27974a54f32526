import { execFileSync } from "node:child_process";
import { mkdir, open, readdir, stat, writeFile } from "node:fs/promises";
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

/**
 * Bit rot as a disk does it: one byte changed, same size, and the
 * modification time put back to the nanosecond, so that rsync's quick check
 * sees nothing.
 */
export async function flipByte(path: string): Promise<void> {
  const before = await stat(path, { bigint: true });
  const file = await open(path, "r+");
  try {
    const byte = Buffer.alloc(1);
    await file.read(byte, 0, 1, 0);
    byte[0]! ^= 0x20;
    await file.write(byte, 0, 1, 0);
  } finally {
    await file.close();
  }
  const seconds = before.mtimeNs / 1_000_000_000n;
  const nanos = String(before.mtimeNs % 1_000_000_000n).padStart(9, "0");
  execFileSync("touch", ["-m", "-d", `@${seconds}.${nanos}`, path]);
  const after = await stat(path, { bigint: true });
  if (after.size !== before.size || after.mtimeNs !== before.mtimeNs) throw new Error(`${path}: the flip changed its size or time`);
}
