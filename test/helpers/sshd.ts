import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { freePort } from "./ports.ts";

export interface TestSshd {
  port: number;
  user: string;
  /** An `-e` command for rsync that logs in with `key`. */
  sshCommand(key: string): string;
  /** How many connections logged in with `key` so far. */
  logins(key: string): number;
  stop(): Promise<void>;
}

/** A key pair; returns the private key's path (the public one is beside it, `.pub`). */
export function makeKey(dir: string, name: string): string {
  const key = join(dir, name);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key]);
  return key;
}

/**
 * A real sshd on a loopback port for this user, where each key may only run
 * rsync confined to one folder by `rrsync`, as an operator would set it up.
 */
export async function startSshd(keys: { publicKey: string; folder: string }[]): Promise<TestSshd> {
  const dir = await mkdtemp(join(tmpdir(), "nanocdn-sshd-"));
  const hostKey = makeKey(dir, "host");
  const authorized = join(dir, "authorized_keys");
  await writeFile(authorized, keys.map(({ publicKey, folder }) => `command="rrsync -munge ${folder}",restrict ${publicKey.trim()}\n`).join(""), {
    mode: 0o600,
  });
  const port = await freePort();
  const config = join(dir, "sshd_config");
  await writeFile(
    config,
    `${[
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${authorized}`,
      `PidFile ${join(dir, "sshd.pid")}`,
      "StrictModes no",
      "PermitRootLogin forced-commands-only",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
    ].join("\n")}\n`,
  );
  if (process.getuid?.() === 0) await mkdir("/run/sshd", { recursive: true });
  const child: ChildProcess = spawn("/usr/sbin/sshd", ["-D", "-e", "-f", config], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr!.on("data", (c) => (log += c));
  for (let i = 0; i < 100 && !log.includes("Server listening"); i++) await new Promise((r) => setTimeout(r, 50));
  if (!log.includes("Server listening")) throw new Error(`sshd did not start:\n${log}`);
  return {
    port,
    user: userInfo().username,
    sshCommand: (key) => `ssh -p ${port} -i ${key} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR`,
    logins: (key) => {
      // sshd logs each login with the key's fingerprint.
      const fingerprint = execFileSync("ssh-keygen", ["-l", "-f", `${key}.pub`], { encoding: "utf8" }).split(" ")[1]!;
      return log.split("\n").filter((line) => line.startsWith("Accepted publickey") && line.includes(fingerprint)).length;
    },
    async stop() {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    },
  };
}
