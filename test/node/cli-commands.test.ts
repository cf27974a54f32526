import { execFile, execFileSync, spawn } from "node:child_process";
import { chmod, chown, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { stringify } from "smol-toml";
import { describe, expect, it } from "vitest";
import { CONFIG_KEYS, loadConfig } from "../../src/adapters/node/cli/config.ts";
import { prepareLocalCluster } from "../../src/adapters/node/cli/local-cluster.ts";
import { runCli } from "../helpers/cli.ts";
import { basic, PASSWORD, USER, writeHtpasswd } from "../helpers/credentials.ts";
import { eventually } from "../helpers/eventually.ts";
import { BIN, startNodeProcess } from "../helpers/node-process.ts";
import { freePort } from "../helpers/ports.ts";

const run = promisify(execFile);
const tempDir = () => mkdtemp(join(tmpdir(), "nanocdn-cmd-"));

describe("nanocdn help", () => {
  it("lists the commands, and every option of a command with its default and meaning", async () => {
    for (const flag of ["--help", "-h"]) {
      const help = await runCli([flag]);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(/^ {2}serve +run a node$/m);
      expect(help.stdout).toMatch(/^ {2}user add +add a user/m);
    }
    const serve = await runCli(["serve", "--help"]);
    expect(serve.code).toBe(0);
    for (const key of CONFIG_KEYS) expect(serve.stdout).toContain(`--${key.replaceAll("_", "-")} `);
    expect(serve.stdout).toMatch(/--listen HOST:PORT +host:port to serve HTTP on.*\(default: "127\.0\.0\.1:8080"\)/);
    expect(serve.stdout).toMatch(/--max-upload-bytes BYTES +larger uploads answer 413 \(default: 1073741824\)/);
    const cluster = await runCli(["help", "cluster"]);
    expect(cluster.stdout).toMatch(/--nodes N +how many nodes, 2 to 9 \(default: 3\)/);
    for (const flag of ["-v", "--version"]) expect((await runCli([flag])).stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  }, 90_000);

  it("answers an unknown command or option with the usage and the closest name", async () => {
    const command = await runCli(["serv"]);
    expect(command.code).toBe(2);
    expect(command.stderr).toContain("unknown command 'serv'; did you mean 'serve'?");
    expect(command.stderr).toContain("Usage: nanocdn <command>");
    const option = await runCli(["serve", "--lissten", "127.0.0.1:1"]);
    expect(option.code).toBe(2);
    expect(option.stderr).toContain("unknown option '--lissten'; did you mean '--listen'?");
    expect(option.stderr).toContain("Usage: nanocdn serve");
    const sub = await runCli(["user", "lst"]);
    expect(sub.code).toBe(2);
    expect(sub.stderr).toContain("did you mean 'user list'?");
    const far = await runCli(["frobnicate"]);
    expect(far.stderr).not.toContain("did you mean");
  });
});

describe("nanocdn cluster", () => {
  it("writes configs that load for an IPv6 host, reuses a cluster with its own ports, and refuses another size there", async () => {
    const dir = await tempDir();
    const first = await prepareLocalCluster({ nodes: 2, dir, basePort: 18101, host: "::1" });
    expect(first.map(({ url }) => url)).toEqual(["http://[::1]:18101", "http://[::1]:18102"]);
    for (const { configFile } of first) {
      const config = await loadConfig({ file: configFile, env: {} });
      expect(config.listen.host).toBe("::1");
      expect(config.peers[0]!.url).toMatch(/^http:\/\/\[::1\]:1810[12]$/);
    }
    const again = await prepareLocalCluster({ nodes: 2, dir, basePort: 18201, host: "127.0.0.1" });
    expect(again).toEqual(first);
    await expect(prepareLocalCluster({ nodes: 3, dir, basePort: 18101, host: "::1" })).rejects.toThrow(
      `${dir} holds a cluster of 2 nodes: run it with --nodes 2, or choose another --dir`,
    );
    await rm(join(dir, "node2"), { recursive: true });
    await expect(prepareLocalCluster({ nodes: 2, dir, basePort: 18101, host: "::1" })).rejects.toThrow(
      `${dir} holds a cluster of 2 nodes without the config of node 2 (${join(dir, "node2", "nanocdn.toml")}); restore it, or choose another --dir`,
    );
  });

  it("exits 1 when every node has failed", async () => {
    const dir = await tempDir();
    const nodes = await prepareLocalCluster({ nodes: 2, dir, basePort: await freePort(), host: "127.0.0.1" });
    for (const { configFile } of nodes) await writeFile(configFile, `${await readFile(configFile, "utf8")}\nno_such_key = 1\n`);
    const result = await runCli(["cluster", "--nodes", "2", "--dir", dir]);
    expect(result.stderr).toContain("no_such_key");
    expect(result.code).toBe(1);
  });
});

describe("nanocdn user", () => {
  it("makes a new users file readable by its folder's group, and by no one else", async () => {
    const dir = await tempDir();
    // As the package makes /etc/nanocdn: root's, in the node's group (here nogroup).
    await chown(dir, 0, 65534);
    const file = join(dir, "htpasswd");
    expect((await runCli(["user", "add", "alice", "--htpasswd", file], { input: "s3cret pass\n" })).code).toBe(0);
    const made = await stat(file);
    expect([made.mode & 0o777, made.gid]).toEqual([0o640, 65534]);
  });

  it("edits the file a symlinked users file points to, and leaves the symlink", async () => {
    const dir = await tempDir();
    const shared = join(dir, "shared-htpasswd");
    await writeHtpasswd(shared, []);
    const link = join(dir, "htpasswd");
    await symlink(shared, link);
    expect((await runCli(["user", "add", "bob", "--htpasswd", link], { input: "a password\n" })).code).toBe(0);
    expect((await lstat(link)).isSymbolicLink()).toBe(true);
    expect(await readFile(shared, "utf8")).toMatch(/^bob:\$2y\$/m);
    expect((await runCli(["user", "remove", "bob", "--htpasswd", link])).code).toBe(0);
    expect((await lstat(link)).isSymbolicLink()).toBe(true);
    expect(await readFile(shared, "utf8")).not.toContain("bob:");
  });

  it("keeps every user when several commands edit the file at once", async () => {
    const dir = await tempDir();
    const file = join(dir, "htpasswd");
    await writeHtpasswd(file, []);
    const names = ["u1", "u2", "u3", "u4", "u5", "u6"];
    const added = await Promise.all(names.map((name) => runCli(["user", "add", name, "--htpasswd", file], { input: `password of ${name}\n` })));
    expect(added.map(({ code }) => code)).toEqual(names.map(() => 0));
    expect((await runCli(["user", "list", "--htpasswd", file])).stdout.split("\n").filter(Boolean).sort()).toEqual(names);
    await Promise.all(["u2", "u5"].map((name) => runCli(["user", "remove", name, "--htpasswd", file])));
    expect((await runCli(["user", "list", "--htpasswd", file])).stdout.split("\n").filter(Boolean).sort()).toEqual(["u1", "u3", "u4", "u6"]);
    // No lock left behind.
    expect((await readdir(dir)).sort()).toEqual(["htpasswd"]);
  });

  it("keeps the bytes of the other lines, whatever their encoding, and adds a UTF-8 name as UTF-8", async () => {
    const file = join(await tempDir(), "htpasswd");
    // Latin-1, as an old file may be: Apache and nginx read it as bytes.
    const latin1 = Buffer.from("# Benutzer M\xfcller\nm\xfcller:{PLAIN}x\n", "latin1");
    await writeFile(file, latin1);
    expect((await runCli(["user", "add", "zoë", "--htpasswd", file], { input: "a password\n" })).code).toBe(0);
    const after = await readFile(file);
    expect(after.subarray(0, latin1.length)).toEqual(latin1);
    expect(after.subarray(latin1.length).toString("utf8")).toMatch(/^zoë:\$2y\$/);
    expect((await runCli(["user", "list", "--htpasswd", file])).stdout).toContain("zoë\n");
    expect((await runCli(["user", "remove", "zoë", "--htpasswd", file])).code).toBe(0);
    expect(await readFile(file)).toEqual(latin1);
  });

  it("keeps the file's group when a member of it edits the file, not root", async () => {
    // In /tmp itself: the test run's own temp folder is closed to other users.
    const dir = await mkdtemp(join("/tmp", "nanocdn-users-"));
    try {
      await chmod(dir, 0o777);
      const file = join(dir, "htpasswd");
      await writeHtpasswd(file, []);
      // nobody's file, read by the node through group 100.
      await chown(file, 65534, 100);
      await chmod(file, 0o640);
      const edit = spawn("setpriv", ["--reuid=65534", "--regid=65534", "--groups=65534,100", process.execPath, BIN, "user", "add", "bob", "--htpasswd", file], {
        stdio: ["pipe", "ignore", "inherit"],
      });
      edit.stdin!.end("a password\n");
      expect(await new Promise((resolve) => edit.on("close", resolve))).toBe(0);
      const after = await stat(file);
      expect([after.uid, after.gid, after.mode & 0o777]).toEqual([65534, 100, 0o640]);
      expect(await readFile(file, "utf8")).toMatch(/^bob:\$2y\$/m);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("adds, lists and removes users in a file Apache's htpasswd reads, which a running node picks up", async () => {
    const dir = await tempDir();
    const file = join(dir, "htpasswd");
    await writeFile(file, "# the team\nkeep:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", { mode: 0o640 });
    const node = await startNodeProcess({ dir, config: { htpasswd: file } });
    try {
      expect((await runCli(["user", "add", "alice", "--htpasswd", file], { input: "s3cret pass\n" })).code).toBe(0);
      expect((await runCli(["user", "add", "bob", "--config", node.configFile], { input: "bob-pw\n" })).code).toBe(0);
      expect((await runCli(["user", "list", "--htpasswd", file])).stdout).toBe("keep\nalice\nbob\n");
      const text = await readFile(file, "utf8");
      expect(text).toMatch(/^# the team\nkeep:\{SHA\}.*\nalice:\$2y\$10\$.{53}\nbob:\$2y\$/);
      expect((await stat(file)).mode & 0o777).toBe(0o640);
      await run("htpasswd", ["-vb", file, "alice", "s3cret pass"]);
      await expect(run("htpasswd", ["-vb", file, "alice", "wrong"])).rejects.toThrow();
      const upload = (user: string, password: string) =>
        fetch(`${node.url}/upload/pub/${user}.txt`, { method: "PUT", body: user, headers: { Authorization: basic(user, password) } }).then((r) => r.status);
      await expect.poll(() => upload("alice", "s3cret pass"), { timeout: 10_000 }).toBe(201);

      // A second add sets a new password.
      await runCli(["user", "add", "alice", "--htpasswd", file], { input: "new pass\n" });
      await run("htpasswd", ["-vb", file, "alice", "new pass"]);
      expect((await runCli(["user", "remove", "bob", "--htpasswd", file])).code).toBe(0);
      const missing = await runCli(["user", "remove", "bob", "--htpasswd", file]);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain(`there is no user 'bob' in ${file}`);
      expect((await runCli(["user", "list", "--htpasswd", file])).stdout).toBe("keep\nalice\n");
      await expect.poll(() => upload("bob", "bob-pw"), { timeout: 10_000 }).toBe(401);
    } finally {
      await node.stop();
    }
  }, 120_000);

  it("asks for the password twice on a terminal, without echoing it", async () => {
    const file = join(await tempDir(), "htpasswd");
    // `script` gives the command a terminal; each answer is typed once its prompt shows.
    const child = spawn("script", ["-qc", `${process.execPath} ${BIN} user add carol --htpasswd ${file}`, "/dev/null"], { stdio: ["pipe", "pipe", "inherit"] });
    let screen = "";
    const typed = new Set<string>();
    child.stdout.on("data", (chunk) => {
      screen += chunk;
      for (const prompt of ["Password for carol: ", "Again: "]) {
        if (screen.includes(prompt) && !typed.has(prompt)) {
          typed.add(prompt);
          child.stdin.write("typed secret\r");
        }
      }
    });
    const code = await new Promise((resolve) => child.on("exit", resolve));
    expect(code).toBe(0);
    expect(screen).toContain(`added 'carol' in ${file}`);
    expect(screen).not.toContain("typed secret");
    await run("htpasswd", ["-vb", file, "carol", "typed secret"]);
  }, 60_000);

  it("refuses a bad name, an empty password or a users file in a missing folder, changing nothing", async () => {
    const dir = await tempDir();
    const file = join(dir, "htpasswd");
    const colon = await runCli(["user", "add", "a:b", "--htpasswd", file], { input: "pw\n" });
    expect(colon.code).toBe(1);
    expect(colon.stderr).toContain("cannot be a user name");
    const empty = await runCli(["user", "add", "carol", "--htpasswd", file], { input: "\n" });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain("no password on stdin");
    await expect(stat(file)).rejects.toThrow(/ENOENT/);
    const nowhere = join(dir, "missing", "htpasswd");
    const lost = await runCli(["user", "add", "dave", "--htpasswd", nowhere], { input: "pw\n" });
    expect(lost.code).toBe(1);
    expect(lost.stderr).toContain(`the folder of the users file ${nowhere} does not exist; create it, or give --htpasswd a file in a folder that does`);
  });
});

/** A self-signed certificate (EC: quick to make) for the DNS name `host`, as a node's public name is; not for any address. */
function certificateFor(dir: string, name: string, host: string) {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  const subject = ["-subj", `/CN=${host}`, "-addext", `subjectAltName=DNS:${host}`];
  const args = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", ...subject, "-keyout", key, "-out", cert];
  execFileSync("openssl", args, { stdio: "ignore" });
  return { cert, key };
}

/** An address of this machine other than loopback, if it has one. */
const ownAddress = Object.values(networkInterfaces())
  .flat()
  .find((address) => address?.family === "IPv4" && !address.internal)?.address;

describe("nanocdn status", () => {
  it("counts a peer whose URL answers as another node as down, and says which", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "secret"), "the secret the nodes share\n");
    // Node 3 where node 2's URL points: the peers' URLs swapped, say.
    const other = createServer((_, response) => void response.writeHead(200, { "Content-Type": "application/json" }).end('{"status":"ok","node":"3"}'));
    await new Promise<void>((resolve) => other.listen(0, "127.0.0.1", resolve));
    const node = await startNodeProcess({
      dir,
      config: { peers: [{ id: "2", url: `http://127.0.0.1:${(other.address() as AddressInfo).port}` }], cluster_secret_file: join(dir, "secret") },
      waitFor: "listening",
    });
    try {
      const reason = "this URL answers as node 3, not 2: check the peer's url in the configuration";
      await eventually(async () => {
        const status = (await (await fetch(`${node.url}/status`, { headers: { Authorization: basic() } })).json()) as {
          peers: { id: string; up: boolean; lastError?: string }[];
        };
        expect(status.peers).toEqual([expect.objectContaining({ id: "2", up: false, lastError: expect.stringContaining(reason) })]);
      }, 15_000);
      const shown = await runCli(["status", "--config", node.configFile, "--user", USER], { env: { NANOCDN_PASSWORD: PASSWORD } });
      expect(shown.stdout).toMatch(/^2 +DOWN/m);
      expect(shown.code).toBe(1);
    } finally {
      await node.stop();
      other.close();
    }
  });

  it("says the node refused the credentials or the signature, not that it is down", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "secret"), "the secret the nodes share\n");
    await writeFile(join(dir, "other-secret"), "a secret of another cluster\n");
    const node = await startNodeProcess({
      dir,
      config: { peers: [{ id: "2", url: "http://127.0.0.1:9" }], cluster_secret_file: join(dir, "secret") },
    });
    try {
      const wrong = await runCli(["status", "--config", node.configFile, "--user", USER], { env: { NANOCDN_PASSWORD: "not the password" } });
      expect(wrong.code).toBe(1);
      expect(wrong.stdout).toMatch(/^1 +refused$/m);
      expect(wrong.stdout).toContain(`node 1 refused the credentials of user '${USER}' (wrong user name or password): check --user and NANOCDN_PASSWORD`);
      expect(wrong.stdout).not.toContain("node 1 did not answer");
      // Node 2 does not exist: it is down, and said so.
      expect(wrong.stdout).toMatch(/^2 +DOWN$/m);

      const signed = await runCli(["status", "--config", node.configFile, "--cluster-secret-file", join(dir, "other-secret")]);
      expect(signed.code).toBe(1);
      expect(signed.stdout).toMatch(/^node 1 refused this node's signed request \(.*\): every node's cluster_secret_file must hold the same secret/m);
      expect(signed.stdout).not.toContain("the secret");

      const right = await runCli(["status", "--config", node.configFile, "--user", USER], { env: { NANOCDN_PASSWORD: PASSWORD } });
      expect(right.stdout).toMatch(/^1 +up +\d+\.\d+\.\d+/m);
    } finally {
      await node.stop();
    }
  });

  it.skipIf(ownAddress === undefined)(
    "reaches its own node on an address of this machine over TLS, checking the chain but not the name",
    async () => {
      const dir = await tempDir();
      // The certificate names the node's public host, not the address it listens on.
      const tls = certificateFor(dir, "node", "cdn.example.test");
      const stranger = certificateFor(dir, "stranger", "cdn.example.test");
      const port = await freePort();
      const file = join(dir, "nanocdn.toml");
      await writeHtpasswd(join(dir, "htpasswd"));
      const config = {
        listen: `${ownAddress}:${port}`,
        data: join(dir, "data"),
        htpasswd: join(dir, "htpasswd"),
        workers: 1,
        tls_cert: tls.cert,
        tls_key: tls.key,
      };
      await writeFile(file, stringify(config));
      const child = spawn(process.execPath, [BIN, "serve", "--config", file], { stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      child.stdout.on("data", (c) => (output += c));
      child.stderr.on("data", (c) => (output += c));
      const exited = new Promise((resolve) => child.on("exit", resolve));
      const status = (...args: string[]) => runCli(["status", "--config", file, "--user", USER, ...args], { env: { NANOCDN_PASSWORD: PASSWORD } });
      try {
        await eventually(async () => expect(output).toContain("nanocdn node listening"), 30_000);
        // Its own certificate is the anchor of a self-signed one; a CA file naming it is one too.
        for (const args of [[], ["--ca-file", tls.cert]]) {
          const result = await status(...args);
          expect(result.stdout).toContain("all 1 nodes up");
          expect(result.code).toBe(0);
        }
        // The chain is still checked: a certificate this configuration does not trust is refused.
        const untrusted = await status("--tls-cert", stranger.cert, "--tls-key", stranger.key);
        expect(untrusted.code).toBe(1);
        expect(untrusted.stdout).toContain("node 1 did not answer: DEPTH_ZERO_SELF_SIGNED_CERT");
        // check-config beside it finds it over https on that address.
        const check = await runCli(["check-config", "--config", file]);
        expect(check.stdout).toContain(`listen (from ${file}): ${ownAddress}:${port} is held by this node, which is running`);
      } catch (error) {
        throw new Error(`${(error as Error).message}\nnode output:\n${output}`);
      } finally {
        child.kill("SIGTERM");
        await exited;
      }
    },
    60_000,
  );
});

describe("commands run as root where the node's user keeps its files", () => {
  it.skipIf(process.getuid?.() !== 0)("refuse, saying whom to run them as, when another user owns the data folder; run when root owns it", async () => {
    const dir = await tempDir();
    const data = join(dir, "data");
    await mkdir(data);
    // As the package leaves /var/lib/nanocdn: the node's user owns it.
    await chown(data, 65534, 65534);
    const owner = (await run("getent", ["passwd", "65534"])).stdout.split(":")[0];
    const file = join(dir, "nanocdn.toml");
    await writeFile(file, stringify({ data, listen: `127.0.0.1:${await freePort()}` }));
    for (const [command, harm] of [
      ["verify", "would make folders and repaired files there that the node cannot write (uploads then fail)"],
      ["check-config", "reads files the node cannot, and would pass them"],
      ["serve", "would make files and folders there that the node, run as that user, cannot write"],
      ["user add alice", "would make a users file there that only root can read"],
    ]) {
      const args = [...command!.split(" "), "--config", file];
      const result = await runCli(args, { input: "a password\n" });
      expect(result.code, command).toBe(2);
      expect(result.stderr).toBe(
        `nanocdn: ${data} belongs to user ${owner}, and as root \`nanocdn ${command!.replace(" alice", "")}\` ${harm}; ` +
          `run it as the user that owns ${data}: sudo -u ${owner} nanocdn ${args.join(" ")}\n`,
      );
    }
    expect(await readdir(data)).toEqual([]);

    // A users file that exists keeps its owner and mode when root rewrites it.
    await writeHtpasswd(join(data, "htpasswd"), []);
    await chown(join(data, "htpasswd"), 65534, 65534);
    expect((await runCli(["user", "add", "alice", "--config", file], { input: "a password\n" })).code).toBe(0);
    expect((await stat(join(data, "htpasswd"))).uid).toBe(65534);

    await chown(data, 0, 0);
    expect((await runCli(["verify", "--config", file])).code).toBe(0);
    expect((await runCli(["check-config", "--config", file])).code).toBe(0);
  });
});
