import { execFile, spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { bindError } from "../../src/adapters/node/process/port-probe.ts";
import { daemonPortHolder } from "../../src/adapters/node/replication/rsyncd.ts";
import { runCli } from "../helpers/cli.ts";
import { eventually } from "../helpers/eventually.ts";
import { bcryptLine } from "../helpers/credentials.ts";
import { startNodeProcess } from "../helpers/node-process.ts";
import { freePort, tcpConnect } from "../helpers/ports.ts";

const run = promisify(execFile);
const tempDir = () => mkdtemp(join(tmpdir(), "nanocdn-check-"));

/** The lines of a refused start or check, by the key they begin with. */
const lineAbout = (stderr: string, key: string) => stderr.split("\n").find((line) => line.trimStart().startsWith(`${key} (`));

describe("a configuration checked before anything is written", () => {
  it("check-config passes a good configuration and writes nothing", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "nanocdn.toml"), `listen = "127.0.0.1:${await freePort()}"\n`);
    const result = await runCli(["check-config", "--config", "nanocdn.toml"], { cwd: dir });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("the configuration is good");
    expect(await readdir(dir)).toEqual(["nanocdn.toml"]);
  });

  it("names NANOCDN_ variables that are no setting, and what was likely meant, in check-config and the node's log", async () => {
    const dir = await tempDir();
    const env = { NANOCDN_SYNC_COPY: "1", NANOCDN_OTHER_TOOL: "x" };
    const check = await runCli(["check-config", "--listen", `127.0.0.1:${await freePort()}`], { cwd: dir, env });
    expect(check.code).toBe(0);
    expect(check.stdout).toContain("  NANOCDN_SYNC_COPY (environment): not a setting, so it is ignored; did you mean NANOCDN_SYNC_COPIES?\n");
    expect(check.stdout).toContain("  NANOCDN_OTHER_TOOL (environment): not a setting, so it is ignored\n");
    expect(check.stdout).not.toContain("NANOCDN_PASSWORD");

    const node = await startNodeProcess({ dir, env: { ...env, NANOCDN_PASSWORD: "read by the status command" } });
    try {
      const warnings = () =>
        node
          .output()
          .split("\n")
          .filter((line) => line.includes("this environment variable is not a setting"))
          .map((line) => JSON.parse(line) as { level: string; variable: string; meant?: string })
          .map(({ level, variable, meant }) => [level, variable, meant ?? null]);
      await eventually(async () =>
        expect(warnings()).toEqual([
          ["warn", "NANOCDN_OTHER_TOOL", null],
          ["warn", "NANOCDN_SYNC_COPY", "NANOCDN_SYNC_COPIES"],
        ]),
      );
    } finally {
      await node.stop();
    }
  });

  it("wants rsync on the machine when the node replicates, and rsync 3.2.4 or newer for peer_fsync", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "cluster.secret"), "a secret the nodes share, long enough\n", { mode: 0o600 });
    const peers = `[{"id":"2","url":"http://127.0.0.1:9","rsync":"${join(dir, "replica")}"}]`;
    const listen = `127.0.0.1:${await freePort()}`;
    const check = (path: string, flags: string[] = []) =>
      runCli(["check-config", "--listen", listen, "--peers", peers, "--cluster-secret-file", "cluster.secret", ...flags], {
        cwd: dir,
        env: { PATH: path },
      });
    // Stand-ins that answer --version as rsync 3.2.4 and 3.2.3 do (the one on PATH may be either), and a broken one.
    const rsyncSaying = async (name: string, script: string) => {
      await mkdir(join(dir, name));
      await writeFile(join(dir, name, "rsync"), `#!/bin/sh\n${script}\n`, { mode: 0o755 });
      return join(dir, name);
    };
    const current = await rsyncSaying("current", "echo 'rsync  version 3.2.4  protocol version 31'");
    const old = await rsyncSaying("old", "echo 'rsync  version 3.2.3  protocol version 31'");
    const broken = await rsyncSaying("broken", "echo 'error while loading shared libraries: libpopt.so.0' >&2; exit 127");
    expect((await check(current, ["--peer-fsync", "true"])).code).toBe(0);
    // None on PATH: a node that replicates, or only receives, is refused; one without peers is not.
    const none = await check(join(dir, "empty"));
    expect([none.code, lineAbout(none.stderr, "peers")?.trim()]).toEqual([
      1,
      "peers (from --peers): replicates with rsync, which is not installed here (none on PATH); install it, e.g. `apt install rsync`",
    ]);
    const receives = await runCli(["check-config", "--listen", listen, "--rsyncd-listen", `127.0.0.1:${await freePort()}`], {
      cwd: dir,
      env: { PATH: join(dir, "empty") },
    });
    expect([receives.code, lineAbout(receives.stderr, "rsyncd_listen")?.trim()]).toEqual([
      1,
      "rsyncd_listen (from --rsyncd-listen): replicates with rsync, which is not installed here (none on PATH); install it, e.g. `apt install rsync`",
    ]);
    expect((await runCli(["check-config", "--listen", listen], { cwd: dir, env: { PATH: join(dir, "empty") } })).code).toBe(0);
    const failing = await check(broken);
    expect([failing.code, lineAbout(failing.stderr, "peers")?.trim()]).toEqual([
      1,
      "peers (from --peers): replicates with rsync, and `rsync --version` fails here (error while loading shared libraries: libpopt.so.0); reinstall rsync",
    ]);
    // One older than --fsync: fine without peer_fsync.
    expect((await check(old)).code).toBe(0);
    const refused = await check(old, ["--peer-fsync", "true"]);
    expect([refused.code, lineAbout(refused.stderr, "peer_fsync")?.trim()]).toEqual([
      1,
      "peer_fsync (from --peer-fsync): needs rsync 3.2.4 or newer (its --fsync), and this machine's rsync is version 3.2.3; upgrade rsync on every node, or set peer_fsync = false",
    ]);
  });

  it("names the key, where its value came from and what to do, for values of the wrong kind", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "nanocdn.toml"), "node = 1\n");
    const result = await runCli(["serve", "--config", "nanocdn.toml", "--peers", "http://x"], { cwd: dir });
    expect(result.code).toBe(2);
    expect((await runCli(["check-config", "--config", "nanocdn.toml"], { cwd: dir })).code).toBe(1);
    expect(lineAbout(result.stderr, "node")).toBe('  node (from nanocdn.toml): expected text in quotes, got 1: write "1"');
    expect(lineAbout(result.stderr, "peers[0]")).toMatch(/^ {2}peers\[0\] \(from --peers\): expected a peer, got "http:\/\/x": write id=url/);
    expect(await readdir(dir)).toEqual(["nanocdn.toml"]);
  });

  it("exits 1, for the service manager to try again, on an address this machine does not have yet", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "nanocdn.toml"), 'listen = "10.255.255.1:18080"\n');
    const result = await runCli(["serve", "--config", "nanocdn.toml"], { cwd: dir });
    expect([result.code, lineAbout(result.stderr, "listen")?.trim()]).toEqual([
      1,
      "listen (from nanocdn.toml): no interface of this machine has the address 10.255.255.1 (yet); use one it has, or 0.0.0.0",
    ]);
  });

  it("refuses an rsync daemon on the port the node listens on, on that address or on every one", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "nanocdn.toml"), 'listen = "127.0.0.1:18473"\n');
    for (const rsyncd of ["127.0.0.1:18473", "0.0.0.0:18473"]) {
      const result = await runCli(["check-config", "--config", "nanocdn.toml", "--rsyncd-listen", rsyncd], { cwd: dir });
      expect([result.code, lineAbout(result.stderr, "rsyncd_listen")?.trim()], rsyncd).toEqual([
        1,
        "rsyncd_listen (from --rsyncd-listen): takes the port of listen: give the rsync daemon a port of its own",
      ]);
    }
    const apart = await runCli(["check-config", "--config", "nanocdn.toml", "--rsyncd-listen", "127.0.0.2:18473"], { cwd: dir });
    expect(lineAbout(apart.stderr, "rsyncd_listen"), apart.stderr).toBeUndefined();
  });

  it("refuses a data path that is a file, a missing users file, a port in use and a short secret, creating nothing", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "not-a-folder"), "x");
    await writeFile(join(dir, "secret"), "short");
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const { port } = taken.address() as AddressInfo;
    try {
      const args = [
        "--data",
        "not-a-folder",
        "--htpasswd",
        "users",
        "--listen",
        `127.0.0.1:${port}`,
        "--peers",
        "2=http://127.0.0.1:9",
        "--cluster-secret-file",
        "secret",
      ];
      for (const [command, code] of [
        ["serve", 2],
        ["check-config", 1],
      ] as const) {
        const result = await runCli([command, ...args], { cwd: dir, env: { NANOCDN_WORKERS: "2" } });
        expect(result.code).toBe(code);
        expect(lineAbout(result.stderr, "data")).toContain(`(from --data): ${join(dir, "not-a-folder")} is a file, not a folder; point data at a folder`);
        expect(lineAbout(result.stderr, "htpasswd")).toContain(`does not exist; create it with \`nanocdn user add NAME --htpasswd ${join(dir, "users")}\``);
        expect(lineAbout(result.stderr, "listen")).toContain(`(from --listen): 127.0.0.1:${port} is in use by another process; stop it or choose another port`);
        expect(lineAbout(result.stderr, "cluster_secret_file")).toContain("has 5 characters, fewer than 16");
        expect(result.stderr).not.toContain("short");
      }
      expect((await readdir(dir)).sort()).toEqual(["not-a-folder", "secret"]);
    } finally {
      taken.close();
    }
  });

  it("passes the ports the running node holds, which serve, and a configuration of another node id, refuse", async () => {
    const dir = await tempDir();
    const secret = join(dir, "secret");
    await writeFile(secret, "a shared secret of some length\n");
    const rsyncd = await freePort();
    const node = await startNodeProcess({
      dir,
      config: { peers: [{ id: "2", url: "http://127.0.0.1:9" }], cluster_secret_file: secret, rsyncd_listen: `127.0.0.1:${rsyncd}` },
    });
    try {
      // As an operator checks a change before `systemctl reload nanocdn`.
      const check = await runCli(["check-config", "--config", node.configFile]);
      expect(check.stderr).toBe("");
      expect(check.code).toBe(0);
      expect(check.stdout).toContain(`listen (from ${node.configFile}): 127.0.0.1:${node.port} is held by this node, which is running`);
      expect(check.stdout).toContain(`rsyncd_listen (from ${node.configFile}): 127.0.0.1:${rsyncd} is held by this node, which is running`);

      const second = await runCli(["serve", "--config", node.configFile]);
      expect(second.code).toBe(1);
      expect(lineAbout(second.stderr, "listen")).toContain(`127.0.0.1:${node.port} is held by this node, which is running already; stop it first`);

      const other = await runCli(["check-config", "--config", node.configFile, "--node", "3"]);
      expect(other.code).toBe(1);
      expect(lineAbout(other.stderr, "listen")).toContain(
        `127.0.0.1:${node.port} is in use by nanocdn node '1', not this node '3'; stop it or choose another port`,
      );
      expect(lineAbout(other.stderr, "rsyncd_listen")).toContain(`127.0.0.1:${rsyncd} is in use by another process`);
    } finally {
      await node.stop();
    }
  });

  it("waits for the port of an rsync daemon on its way out, which removes its pid file a moment before it lets go of the port", async () => {
    const dir = await tempDir();
    const state = join(dir, "data", "state");
    await mkdir(state, { recursive: true });
    const pidFile = join(state, "rsyncd.pid");
    await writeFile(join(state, "rsyncd.conf"), `pid file = ${pidFile}\nuse chroot = no\n[from-2]\n  path = ${state}\n`);
    const listen = { host: "127.0.0.1", port: await freePort() };
    const daemon = spawn("rsync", ["--daemon", "--no-detach", `--config=${join(state, "rsyncd.conf")}`, `--address=${listen.host}`, `--port=${listen.port}`], {
      // A socket as its stdin would make it serve that one connection, as under inetd.
      stdio: "ignore",
    });
    try {
      // Asked only once it listens: the question binds the port, and would take it from a daemon still starting.
      await eventually(() => tcpConnect(listen.port));
      expect(await daemonPortHolder(state, listen)).toBe("leftover");
      // Stopped, its pid file taken away as it would do on its way out: the port is held until it goes on.
      daemon.kill("SIGSTOP");
      daemon.kill("SIGTERM");
      await rm(pidFile);
      expect((await bindError(listen))?.code).toBe("EADDRINUSE");
      const check = runCli(["check-config", "--data", "data", "--listen", `127.0.0.1:${await freePort()}`, "--rsyncd-listen", `127.0.0.1:${listen.port}`], {
        cwd: dir,
      });
      // Let go while the check runs (rsync then takes 400 ms more to exit).
      setTimeout(() => daemon.kill("SIGCONT"), 1000);
      const { code, stdout, stderr } = await check;
      expect([code, stderr]).toEqual([0, ""]);
      expect(stdout).not.toContain("rsyncd_listen");
    } finally {
      daemon.kill("SIGKILL");
    }

    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(listen.port, listen.host, resolve));
    try {
      expect(await daemonPortHolder(state, listen)).toBe("other");
    } finally {
      taken.close();
    }
  });

  it("refuses a file where a folder of the node's state belongs", async () => {
    for (const inside of ["state", join("state", "expiry")]) {
      const dir = await tempDir();
      await mkdir(dirname(join(dir, "data", inside)), { recursive: true });
      await writeFile(join(dir, "data", inside), "x");
      const result = await runCli(["check-config", "--data", "data", "--listen", `127.0.0.1:${await freePort()}`], { cwd: dir });
      expect(result.code, result.stderr).toBe(1);
      expect(lineAbout(result.stderr, "data")).toContain(`${join(dir, "data", inside)} is a file, not a folder; move it away`);
    }
  });

  it("refuses an htpasswd file without one usable line", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "users"), "alice\n<html>\n");
    const result = await runCli(["serve", "--htpasswd", "users", "--listen", `127.0.0.1:${await freePort()}`], { cwd: dir });
    expect(result.code).toBe(2);
    expect(lineAbout(result.stderr, "htpasswd")).toContain("holds no usable user (line 1: not 'user:hash', skipped; line 2: not 'user:hash', skipped)");
    expect((await readdir(dir)).sort()).toEqual(["users"]);
    // One good line is enough; the others are logged as skipped.
    await writeFile(join(dir, "users"), `alice\n${bcryptLine("bob", "pw")}\n`);
    expect((await runCli(["check-config", "--htpasswd", "users", "--listen", `127.0.0.1:${await freePort()}`], { cwd: dir })).code).toBe(0);
  });

  it("refuses a symlinked folder below files/, where every upload would be refused", async () => {
    const dir = await tempDir();
    await mkdir(join(dir, "data", "files"), { recursive: true });
    await mkdir(join(dir, "elsewhere"));
    await symlink(join(dir, "elsewhere"), join(dir, "data", "files", "1"));
    const result = await runCli(["serve", "--data", "data", "--listen", `127.0.0.1:${await freePort()}`], { cwd: dir });
    expect(result.code).toBe(2);
    expect(lineAbout(result.stderr, "data")).toContain(
      `${join(dir, "data", "files", "1")} is a symlink; the store never follows one below files/: make it a folder (mount the disk there, or point data at it)`,
    );
  });

  it("refuses a store it cannot write when it has no peers to send uploads to", async () => {
    const dir = await tempDir();
    const files = join(dir, "data", "files");
    await mkdir(files, { recursive: true });
    // Tests run as root, who may write whatever the mode says: a read-only mount stops even root.
    await run("mount", ["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", files]);
    try {
      const result = await runCli(["check-config", "--data", "data", "--listen", `127.0.0.1:${await freePort()}`], { cwd: dir });
      expect(result.code).toBe(1);
      expect(lineAbout(result.stderr, "data")).toContain(`(from --data): ${files} is not writable by user 0 and there are no peers to take uploads`);
    } finally {
      await run("umount", [files]);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
