import { statfs } from "node:fs/promises";

/** Bytes an unprivileged process may still write under `dir`. */
export async function freeBytes(dir: string): Promise<number> {
  const fs = await statfs(dir);
  return fs.bavail * fs.bsize;
}
