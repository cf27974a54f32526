// The tools the benchmark needs, and the facts about the machine that make
// its numbers comparable (or not) with another run.

import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { availableParallelism, cpus, release, totalmem } from "node:os";
import { resolve } from "node:path";

const REPO = resolve(import.meta.dirname, "..");

function has(command: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;
}

/**
 * nginx, haproxy and lsyncd (the seed's stack, the reference), wrk (the load
 * generator) and ab (HEAD load, see ab.ts) come from Debian's packages; install them when missing, as CI
 * starts from a bare machine. rsync is a dependency of nanocdn itself and is
 * checked, not installed.
 */
export function ensureTools(log: (line: string) => void): void {
  const missing = [
    has("nginx") ? undefined : "nginx",
    has("haproxy") ? undefined : "haproxy",
    has("lsyncd") ? undefined : "lsyncd",
    has("wrk") ? undefined : "wrk",
    has("ab") ? undefined : "apache2-utils",
  ].filter((p) => p !== undefined);
  if (missing.length > 0) {
    const sudo = process.getuid?.() === 0 ? [] : ["sudo", "-n"];
    log(`installing ${missing.join(", ")} with apt-get…`);
    const run = (args: string[]) => {
      const [command, ...rest] = [...sudo, ...args];
      execFileSync(command!, rest, { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
    };
    run(["apt-get", "update", "-q"]);
    run(["apt-get", "install", "-y", "-q", ...missing]);
  }
  for (const tool of ["nginx", "haproxy", "lsyncd", "wrk", "ab", "rsync"]) {
    if (!has(tool)) throw new Error(`${tool} is required and could not be found`);
  }
  // Debian may start the packaged nginx and haproxy on install; the
  // benchmark runs its own on free ports and does not touch those.
}

function firstLine(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: "utf8" });
  return (
    `${result.stdout ?? ""}${result.stderr ?? ""}`
      .split("\n")
      .find((l) => l.trim() !== "")
      ?.trim() ?? "unknown"
  );
}

export interface DiskFacts {
  dir: string;
  source: string;
  fstype: string;
  /** From /sys/block/<dev>/queue/rotational: "ssd" (0), "hdd" (1) or unknown (overlay, tmpfs, …). */
  kind: string;
}

export function diskOf(dir: string): DiskFacts {
  const out = spawnSync("findmnt", ["-no", "SOURCE,FSTYPE", "--target", dir], { encoding: "utf8" }).stdout?.trim() ?? "";
  const [source = "unknown", fstype = "unknown"] = out.split(/\s+/);
  let kind = "unknown";
  // /dev/nvme0n1p2 → nvme0n1, /dev/sda1 → sda, /dev/vda → vda; mapper devices stay unknown.
  const device = /^\/dev\/([a-z]+\d+n\d+|[a-z]+)/.exec(source)?.[1];
  if (device && readdirSync("/sys/block").includes(device)) {
    try {
      const rotational = readFileSync(`/sys/block/${device}/queue/rotational`, "utf8").trim();
      kind =
        rotational === "0"
          ? `${device}: rotational=0 (SSD)`
          : `${device}: rotational=1 (a spinning disk, or a virtual disk that does not say: virtio often reports 1)`;
    } catch {
      // no queue info
    }
  }
  if (fstype === "tmpfs") kind = "tmpfs (RAM: fsync costs nothing here)";
  return { dir, source, fstype, kind };
}

export interface MachineFacts {
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  disk: DiskFacts;
  versions: { node: string; nginx: string; haproxy: string; lsyncd: string; rsync: string; wrk: string; nanocdn: string; commit: string };
}

export function machineFacts(dataDir: string): MachineFacts {
  const pkg = JSON.parse(readFileSync(resolve(REPO, "package.json"), "utf8")) as { version: string };
  // Read-only git query; the working tree may hold uncommitted changes on top of it.
  const commit = spawnSync("git", ["-C", REPO, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).stdout?.trim() || "unknown";
  return {
    cores: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? "unknown",
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    kernel: release(),
    disk: diskOf(dataDir),
    versions: {
      node: process.version,
      nginx: firstLine("nginx", ["-v"]).replace(/^nginx version:\s*/, ""),
      haproxy: firstLine("haproxy", ["-v"]).replace(/^HAProxy version\s+(\S+).*$/, "$1"),
      lsyncd: firstLine("lsyncd", ["--version"]).replace(/^Version:\s*/, ""),
      rsync: firstLine("rsync", ["--version"])
        .replace(/\s+protocol.*$/, "")
        .replace(/^rsync\s+version\s+/, ""),
      wrk: firstLine("wrk", ["-v"])
        .replace(/\s+\[.*$/, "")
        .replace(/^wrk\s+/, ""),
      nanocdn: pkg.version,
      commit,
    },
  };
}
