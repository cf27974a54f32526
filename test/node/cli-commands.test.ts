import { execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { CONFIG_KEYS } from "../../src/adapters/node/cli/config.ts";
import { runCli } from "../helpers/cli.ts";
import { basic } from "../helpers/credentials.ts";
import { BIN, startNodeProcess } from "../helpers/node-process.ts";

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

describe("nanocdn user", () => {
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

  it("refuses a bad name or an empty password, changing nothing", async () => {
    const dir = await tempDir();
    const file = join(dir, "htpasswd");
    const colon = await runCli(["user", "add", "a:b", "--htpasswd", file], { input: "pw\n" });
    expect(colon.code).toBe(1);
    expect(colon.stderr).toContain("cannot be a user name");
    const empty = await runCli(["user", "add", "carol", "--htpasswd", file], { input: "\n" });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain("no password on stdin");
    await expect(stat(file)).rejects.toThrow(/ENOENT/);
  });
});
