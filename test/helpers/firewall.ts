import { execFileSync, spawnSync } from "node:child_process";

/**
 * Network cuts between node processes on 127.0.0.1, made by the kernel's
 * firewall (nftables): each node runs under its own group id, and a cut drops
 * every packet a node's processes (the node, its rsync pushes) send to the
 * ports of the nodes on the other side, on new and open connections alike.
 * The test process itself (group 0) still reaches every node.
 */
export class Firewall {
  readonly #table: string;
  #made = false;

  constructor(name: string) {
    this.#table = `${name}_${process.pid}`;
  }

  /** Throws a clear error when nft is missing or not allowed here (it needs root). */
  static check(): void {
    const probe = spawnSync("nft", ["list", "tables"], { encoding: "utf8" });
    if (probe.error || probe.status !== 0) {
      throw new Error(`this test needs nftables as root (apt-get install nftables): ${probe.error?.message ?? probe.stderr.trim()}`);
    }
  }

  /** Drops what the processes of group `fromGid` send to any of `toPorts`, until heal(). */
  cut(fromGid: number, toPorts: number[]): void {
    if (!this.#made) {
      nft(["add", "table", "inet", this.#table]);
      nft(["add", "chain", "inet", this.#table, "out", "{ type filter hook output priority 0; policy accept; }"]);
      this.#made = true;
    }
    nft(["add", "rule", "inet", this.#table, "out", "meta", "skgid", String(fromGid), "tcp", "dport", `{ ${toPorts.join(", ")} }`, "drop"]);
  }

  /** Removes every rule this firewall added. */
  heal(): void {
    if (!this.#made) return;
    nft(["delete", "table", "inet", this.#table]);
    this.#made = false;
  }
}

function nft(args: string[]): void {
  execFileSync("nft", args, { stdio: ["ignore", "ignore", "pipe"] });
}
