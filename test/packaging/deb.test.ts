import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { configDefault } from "../../src/adapters/node/cli/config-help.ts";
import { basic } from "../helpers/credentials.ts";
import { eventually } from "../helpers/eventually.ts";
import { freeLowPort, freePort } from "../helpers/ports.ts";

const exec = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "../..");
const { version } = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as { version: string };
const DEB = join(ROOT, "out", `nanocdn_${version}_all.deb`);

/** dpkg waits for nobody: another install on the machine holds its lock for a moment. */
async function dpkg(...args: string[]) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await exec("dpkg", args);
    } catch (error) {
      if (attempt > 30 || !/lock/i.test(String((error as { stderr?: string }).stderr))) throw error;
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

/** The installed command as the unit runs it: as the user nanocdn. */
const asNode = (args: string[]) =>
  exec("setpriv", ["--reuid=nanocdn", "--regid=nanocdn", "--init-groups", "/usr/bin/nanocdn", ...args], { cwd: "/var/lib/nanocdn" });

/**
 * A unix datagram socket standing in for systemd's notify socket (Node has
 * none of its own): Debian's Python prints each message it receives.
 */
function notifyListener(path: string): { child: ChildProcess; messages: () => string } {
  // Open to the node's user, which sends as systemd's socket allows its services to.
  const script =
    "import os,socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nos.chmod(sys.argv[1],0o777)\nprint('listening',flush=True)\n" +
    "while True:\n  print(repr(s.recv(4096).decode()),flush=True)\n";
  const child = spawn("/usr/bin/python3", ["-c", script, path], { stdio: ["ignore", "pipe", "inherit"] });
  let text = "";
  child.stdout!.on("data", (chunk) => (text += chunk));
  return { child, messages: () => text };
}

describe("the Debian package", () => {
  // What the machine had before: the test leaves it so.
  const hadUser = exec("getent", ["passwd", "nanocdn"]).then(
    () => true,
    () => false,
  );
  const hadData = existsSync("/var/lib/nanocdn");

  beforeAll(async () => {
    expect(existsSync("/usr/bin/nanocdn"), "nanocdn is installed on this machine already").toBe(false);
    await exec("npm", ["run", "package"], { cwd: ROOT });
  }, 600_000);

  afterAll(async () => {
    await dpkg("--purge", "nanocdn").catch(() => {});
    if (!(await hadUser)) await exec("userdel", ["nanocdn"]).catch(() => {});
    if (!hadData) await rm("/var/lib/nanocdn", { recursive: true, force: true });
  }, 120_000);

  it("holds the bundled node, and of its npm packages only their licences", async () => {
    const { stdout: contents } = await exec("dpkg-deb", ["--contents", DEB], { maxBuffer: 64 * 1024 * 1024 });
    for (const path of [
      "./usr/bin/nanocdn",
      "./lib/systemd/system/nanocdn.service",
      "./etc/nanocdn/nanocdn.toml",
      "./usr/lib/nanocdn/dist/adapters/node/cli/nanocdn.mjs",
      "./usr/share/doc/nanocdn/copyright",
    ]) {
      expect(contents).toContain(` ${path}`);
    }
    for (const absent of [
      "/usr/lib/nanocdn/src/",
      // The bundle holds every package it runs.
      "/node_modules/",
      // The bundle is all of dist/ the node runs: no compiled modules beside it.
      "/usr/lib/nanocdn/dist/adapters/node/cli/main.js",
    ]) {
      expect(contents).not.toContain(absent);
    }
    // The bundle the node runs holds its packages' code too: the copyright file says so for it.
    const { stdout: copyright } = await exec("sh", ["-c", 'dpkg-deb --fsys-tarfile "$1" | tar -xO ./usr/share/doc/nanocdn/copyright', "sh", DEB]);
    expect(copyright).toMatch(
      /^Files: usr\/lib\/nanocdn\/dist\/adapters\/node\/cli\/nanocdn\.mjs\nCopyright: .+, and the authors of each package it holds\nLicense: MIT and Apache-2\.0 and BSD-3-Clause and ISC\n/m,
    );
    expect(copyright).toMatch(/^Files: usr\/share\/doc\/nanocdn\/packages\/\*\nCopyright: .+\nLicense: MIT and Apache-2\.0 and BSD-3-Clause and ISC\n/m);
    // Each short name in a License field has its text, or says where it is.
    for (const name of ["MIT", "Apache-2.0", "BSD-3-Clause", "ISC"]) expect(copyright).toMatch(new RegExp(`^License: ${name.replace(".", "\\.")}\n `, "m"));
    // Each package in it has its package.json and licence beside the copyright file, at the version bundled.
    for (const name of ["hono", "@hono/node-server", "undici", "pino", "zod", "prom-client", "bcryptjs"]) {
      const { version: bundled } = JSON.parse(await readFile(join(ROOT, "node_modules", name, "package.json"), "utf8")) as { version: string };
      const folder = `./usr/share/doc/nanocdn/packages/${name}@${bundled}/`;
      expect(contents).toContain(` ${folder}package.json`);
      expect(contents).toContain(` ${folder}LICENSE`);
    }
    // Every folder there holds a licence text beside its package.json; one without a licence file has it in its README.
    const docs = new Map<string, string[]>();
    for (const [, folder, file] of contents.matchAll(/ \.\/usr\/share\/doc\/nanocdn\/packages\/((?:@[^/\n]+\/)?[^/@\n]+@[^/\n]+)\/([^/\n]+)\n/g)) {
      docs.set(folder!, [...(docs.get(folder!) ?? []), file!]);
    }
    expect(docs.size).toBeGreaterThan(20);
    for (const [folder, files] of docs) {
      expect(files, folder).toContain("package.json");
      expect(
        files.filter((file) => file !== "package.json"),
        folder,
      ).not.toEqual([]);
    }
    expect([...docs].find(([folder]) => folder.startsWith("unix-crypt-td-js@"))?.[1]).toContain("README.markdown");
    const { stdout: control } = await exec("dpkg-deb", ["--field", DEB, "Depends", "Version", "Architecture"]);
    // The Node.js that package.json's engines asks for (undici needs 20.18.1).
    expect(control).toContain("Depends: nodejs (>= 20.18.1), rsync, passwd");
    expect(control).toContain(`Version: ${version}`);
    expect(control).toContain("Architecture: all");
  });

  it("installs a node that runs as its own user, tells systemd it is ready, and removes cleanly", async () => {
    await dpkg("-i", DEB);
    expect((await exec("/usr/bin/nanocdn", ["--version"])).stdout.trim()).toBe(version);
    // Enabled at boot, as Debian's packages of services are.
    const wants = "/etc/systemd/system/multi-user.target.wants/nanocdn.service";
    expect(existsSync(wants)).toBe(true);

    // The unit passes systemd's own check, and gives requests in flight their time to finish.
    const verify = await exec("systemd-analyze", ["verify", "/lib/systemd/system/nanocdn.service"]);
    expect(`${verify.stdout}${verify.stderr}`).not.toMatch(/nanocdn/);
    const unit = await readFile("/lib/systemd/system/nanocdn.service", "utf8");
    expect(Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)?.[1])).toBeGreaterThan(Number(configDefault("shutdown_grace")));
    // SIGTERM to the node's main process alone, as the tests stop nodes: it ends its own serving processes, rsync runs and daemon.
    expect(unit).toMatch(/^KillMode=mixed$/m);
    // A node that stops on an error is started again after 5 seconds (as the README says)...
    expect(unit).toMatch(/^Restart=on-failure$/m);
    expect(unit).toMatch(/^RestartSec=5$/m);
    // ...unless a configuration the node cannot run with ended it, with the status that the unit does not restart on.
    const prevented = Number(/^RestartPreventExitStatus=(\d+)$/m.exec(unit)?.[1]);
    await expect(asNode(["serve", "--listen", "127.0.0.1:http-alt"])).rejects.toMatchObject({
      code: prevented,
      stderr: expect.stringContaining("listen (from --listen)"),
    });

    const { stdout: user } = await exec("getent", ["passwd", "nanocdn"]);
    expect(user).toMatch(/^nanocdn:x:\d+:\d+:nanocdn node:\/var\/lib\/nanocdn:\/usr\/sbin\/nologin$/m);
    const uid = Number(user.split(":")[2]);
    const data = await stat("/var/lib/nanocdn");
    expect([data.uid, data.mode & 0o777]).toEqual([uid, 0o750]);
    const users = await stat("/etc/nanocdn/htpasswd");
    expect([users.uid, users.mode & 0o777]).toEqual([0, 0o640]);

    // The example configuration is good as installed (on a port free here), checked as its header says.
    const port = await freePort();
    expect(await readFile("/etc/nanocdn/nanocdn.toml", "utf8")).toContain("# Check a change with `sudo -u nanocdn nanocdn check-config`");
    const check = await asNode(["check-config", "--listen", `127.0.0.1:${port}`]);
    expect(check.stdout).toContain("data /var/lib/nanocdn");
    // A port under 1024: the unit grants the capability that the node's user lacks here; serve without it refuses.
    const low = await freeLowPort();
    const lowCheck = await asNode(["check-config", "--listen", `127.0.0.1:${low}`]);
    expect(lowCheck.stdout).toContain(
      `listen (from --listen): port ${low} needs CAP_NET_BIND_SERVICE, which the packaged unit grants and this check does not have`,
    );
    await expect(asNode(["serve", "--listen", `127.0.0.1:${low}`])).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining(`port ${low} needs root or CAP_NET_BIND_SERVICE`),
    });
    // root would read files the node cannot: it is sent to the node's user.
    await expect(exec("/usr/bin/nanocdn", ["check-config", "--listen", `127.0.0.1:${port}`])).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining(`run it as the user that owns /var/lib/nanocdn: sudo -u nanocdn nanocdn check-config --listen 127.0.0.1:${port}`),
    });
    // root makes the users: the packaged users file is root's, and a rewrite keeps its owner and mode.
    await exec("sh", ["-c", `echo 'installed pw' | /usr/bin/nanocdn user add alice`]);
    expect(await stat("/etc/nanocdn/htpasswd")).toMatchObject({ uid: 0, gid: users.gid, mode: users.mode });
    expect((await exec("/usr/bin/nanocdn", ["user", "list"])).stdout).toBe("alice\n");

    // As the unit runs it: as nanocdn, with a notify socket to report to.
    // Not in the tests' own temp folder, which only root may enter.
    const dir = await mkdtemp("/tmp/nanocdn-notify-");
    await chmod(dir, 0o777);
    const socket = join(dir, "notify");
    const listener = notifyListener(socket);
    await eventually(async () => expect(listener.messages()).toContain("listening"));
    const node = spawn(
      "setpriv",
      ["--reuid=nanocdn", "--regid=nanocdn", "--init-groups", "/usr/bin/nanocdn", "serve", "--listen", `127.0.0.1:${port}`, "--workers", "2"],
      {
        cwd: "/var/lib/nanocdn",
        env: { ...process.env, UV_THREADPOOL_SIZE: undefined, NOTIFY_SOCKET: socket },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let output = "";
    node.stdout!.on("data", (c) => (output += c));
    node.stderr!.on("data", (c) => (output += c));
    const exited = new Promise((r) => node.on("exit", r));
    try {
      await eventually(async () => expect(listener.messages()).toContain("READY=1"), 30_000);
      expect(listener.messages().match(/READY=1/g)).toHaveLength(1);
      // The installed command sizes the node's thread pool for concurrent fsyncs (setpriv and the command exec it: the same pid).
      expect((await readFile(`/proc/${node.pid}/environ`, "latin1")).split("\0")).toContain("UV_THREADPOOL_SIZE=32");
      const put = await fetch(`http://127.0.0.1:${port}/upload/pub/installed.txt`, {
        method: "PUT",
        body: "from the package",
        headers: { Authorization: basic("alice", "installed pw") },
      });
      expect(put.status).toBe(201);
      expect((await stat("/var/lib/nanocdn/files/1/pub/installed.txt")).uid).toBe(uid);
      // A change is checked beside the running node, before `systemctl reload nanocdn`.
      const beside = await asNode(["check-config", "--listen", `127.0.0.1:${port}`]);
      expect(beside.stdout).toContain(`listen (from --listen): 127.0.0.1:${port} is held by this node, which is running`);
      node.kill("SIGTERM");
      expect(await exited).toBe(0);
      await eventually(async () => expect(listener.messages()).toContain("STOPPING=1"));
    } catch (error) {
      throw new Error(`${(error as Error).message}\nnode output:\n${output}`);
    } finally {
      node.kill("SIGKILL");
      listener.child.kill();
      await rm(dir, { recursive: true, force: true });
    }

    await dpkg("-r", "nanocdn");
    expect(existsSync("/usr/bin/nanocdn")).toBe(false);
    expect(existsSync("/etc/nanocdn/nanocdn.toml")).toBe(true);
    await dpkg("--purge", "nanocdn");
    expect(existsSync("/etc/nanocdn")).toBe(false);
    expect(existsSync(wants)).toBe(false);
    // The files are the service's: a purge leaves them.
    expect(existsSync("/var/lib/nanocdn/files/1/pub/installed.txt")).toBe(true);
  }, 180_000);

  it("installs again over a configuration the admin deleted, which dpkg does not bring back", async () => {
    await dpkg("-i", DEB);
    await rm("/etc/nanocdn/nanocdn.toml");
    await dpkg("-i", DEB);
    expect(existsSync("/etc/nanocdn/nanocdn.toml")).toBe(false);
    expect(existsSync("/usr/bin/nanocdn")).toBe(true);
    await dpkg("--purge", "nanocdn");
  }, 120_000);
});
