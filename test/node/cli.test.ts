import { spawn } from "node:child_process";
import { mkdtemp, readFile, readdir, stat, writeFile } from "node:fs/promises";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { exampleConfig } from "../../src/adapters/node/cli/config-help.ts";
import { type ConfigKey, configSchema, loadConfig } from "../../src/adapters/node/cli/config.ts";
import { parse as parseToml } from "smol-toml";
import { runCli } from "../helpers/cli.ts";
import { basic } from "../helpers/credentials.ts";
import { BIN, startNodeProcess } from "../helpers/node-process.ts";
import { requirePortFree } from "../helpers/ports.ts";

async function tempDir() {
  return mkdtemp(join(tmpdir(), "nanocdn-cli-"));
}

describe("nanocdn command line", () => {
  it("refuses a bad configuration with one line per bad key, naming where the value came from", async () => {
    const dir = await tempDir();
    const file = join(dir, "bad.toml");
    await writeFile(file, 'listen = "nowhere"\nmax_upload_bytes = "lots"\nbogus = 1\nsync-copies = 1\n');
    const result = await runCli(["serve", "--config", file, "--cache-max-age=-5", "--workers", "300"], {
      env: { NANOCDN_NODE: "../evil" },
      cwd: dir,
    });
    expect(result.code).toBe(2);
    const lines = result.stderr.split("\n");
    expect(lines.find((l) => l.includes("listen (from"))).toContain("expected host:port");
    expect(lines.find((l) => l.includes("max_upload_bytes"))).toContain(`(from ${file}): expected a whole number, got "lots"`);
    expect(lines.find((l) => l.includes("bogus"))).toMatch(/unknown key$/);
    // A flag's spelling in the file, or a typo: the key meant.
    expect(lines.find((l) => l.includes("sync-copies"))).toBe(`  sync-copies (from ${file}): unknown key; did you mean sync_copies?`);
    expect(lines.find((l) => l.startsWith("  node"))).toContain("(from NANOCDN_NODE)");
    expect(lines.find((l) => l.includes("cache_max_age"))).toContain("(from --cache-max-age): must be at least 0");
    expect(lines.find((l) => l.includes("workers"))).toBe("  workers (from --workers): must be at most 256");
  });

  it("takes IPv6 listen addresses in brackets, and no port 0", async () => {
    const cwd = await tempDir();
    const config = await loadConfig({ env: {}, flags: { listen: "[::1]:8081" }, cwd });
    expect(config.listen).toEqual({ host: "::1", port: 8081 });
    await expect(loadConfig({ env: {}, flags: { listen: "::1:8081" }, cwd })).rejects.toThrow(/expected host:port/);
    // A port the system picks could be found by no peer, nor by `nanocdn status`.
    await expect(loadConfig({ env: {}, flags: { rsyncd_listen: "127.0.0.1:0" }, cwd })).rejects.toThrow(
      "rsyncd_listen (from --rsyncd-listen): port 0 takes whichever port is free",
    );
  });

  it("refuses a cluster configuration naming itself, an id twice, a bad URL or no secret", async () => {
    const dir = await tempDir();
    const file = join(dir, "cluster.toml");
    await writeFile(
      file,
      [
        'node = "1"',
        '[[peers]]\nid = "1"\nurl = "http://10.0.0.1:8080"',
        '[[peers]]\nid = "2"\nurl = "http://10.0.0.2:8080"',
        '[[peers]]\nid = "2"\nurl = "http://10.0.0.3:8080"',
        '[[peers]]\nid = "4"\nurl = "10.0.0.4:8080/files"',
      ].join("\n"),
    );
    const result = await runCli(["serve", "--config", "cluster.toml"], { cwd: dir });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("peers[0] (from cluster.toml): peer '1' is this node itself");
    expect(result.stderr).toContain("peers[2] (from cluster.toml): node id '2' appears twice");
    expect(result.stderr).toMatch(/peers\[3\]\.url \(from cluster.toml\): expected the node's base URL/);
    expect(result.stderr).toContain("cluster_secret_file (not set): required when peers are configured");
    const fromEnv = await runCli(["serve"], { cwd: dir, env: { NANOCDN_PEERS: "2=http://10.0.0.2:8080 2=http://10.0.0.3:8080" } });
    expect(fromEnv.stderr).toContain("peers[1] (from NANOCDN_PEERS): node id '2' appears twice");
  });

  it("names an unknown key in a [[peers]] table by its peer, and the file it came from", async () => {
    const dir = await tempDir();
    await writeFile(
      join(dir, "peers.toml"),
      'cluster_secret_file = "secret"\n[[peers]]\nid = "2"\nurl = "http://10.0.0.2:8080"\nrsnyc = "rsync://10.0.0.2/x/"\n',
    );
    const result = await runCli(["check-config", "--config", "peers.toml"], { cwd: dir });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe("nanocdn: invalid configuration:\n  peers[0].rsnyc (from peers.toml): unknown key; did you mean rsync?\n");
  });

  it("refuses an interval or time-out longer than a timer can wait (24.8 days), naming the key and the most it takes", async () => {
    const cwd = await tempDir();
    // Every key that ends up in a setTimeout or setInterval, by its unit.
    const timers = {
      seconds: { most: 2_147_483, keys: ["shutdown_grace", "scrub_interval", "full_pass_interval"] },
      ms: {
        most: 2_147_483_647,
        keys: ["health_interval_ms", "peer_connect_timeout_ms", "peer_timeout_ms", "peer_read_timeout_ms", "peer_read_hedge_ms", "replication_batch_ms"],
      },
    };
    for (const [unit, { most, keys }] of Object.entries(timers)) {
      for (const key of keys) {
        await expect(loadConfig({ env: {}, flags: { [key]: String(most) }, cwd }), key).resolves.toMatchObject({ [key]: most });
        await expect(loadConfig({ env: {}, flags: { [key]: String(most + 1) }, cwd })).rejects.toThrow(
          `${key} (from --${key.replaceAll("_", "-")}): must be at most ${most} ${unit} (24.8 days, the longest a timer can wait)`,
        );
      }
    }
  });

  it("writes an example configuration where any key's line, uncommented as it stands, is a valid value", () => {
    const example = exampleConfig({}, "example");
    // The plain keys; the [[peers]] table comes last.
    const keyLines = example
      .slice(0, example.indexOf("# [[peers]]"))
      .split("\n")
      .filter((line) => /^# [a-z_]+ = /.test(line));
    expect(keyLines.length).toBeGreaterThan(30);
    for (const line of keyLines) {
      const [key, value] = Object.entries(parseToml(line.slice(2)))[0]!;
      expect(configSchema.shape[key as ConfigKey].safeParse(value).success, line).toBe(true);
    }
  });

  it("refuses half a TLS configuration", async () => {
    const result = await runCli(["serve", "--tls-cert", "cert.pem"], { cwd: await tempDir() });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("tls_cert and tls_key go together");
  });

  it("refuses a config file that is not TOML or does not exist", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "broken.toml"), "node = [unclosed\n");
    const broken = await runCli(["serve", "--config", "broken.toml"], { cwd: dir });
    expect(broken.code).toBe(2);
    expect(broken.stderr).toContain("broken.toml is not valid TOML");
    const missing = await runCli(["serve", "--config", "missing.toml"], { cwd: dir });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("cannot read config file missing.toml");
  });

  it("fails to start with a clear error, starting no serving process, when its port is taken", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const { port } = taken.address() as AddressInfo;
    try {
      const result = await runCli(["serve", "--listen", `127.0.0.1:${port}`, "--workers", "2"], { cwd: await tempDir() });
      const output = result.stdout + result.stderr;
      // Not 2 (the configuration is wrong, which the unit does not retry): the port may be free at the next start.
      expect(result.code).toBe(1);
      expect(output).toContain(`listen (from --listen): 127.0.0.1:${port} is in use by another process`);
      expect(output).not.toContain("serving process");
    } finally {
      taken.close();
    }
  });

  it("lets flags win over the environment and the environment over the file", async () => {
    const node = await startNodeProcess({
      config: { node: "from-file", max_upload_bytes: 1000 },
      env: { NANOCDN_NODE: "from-env", NANOCDN_MAX_UPLOAD_BYTES: "10" },
      args: ["--node", "flag"],
    });
    try {
      const stored = await fetch(`${node.url}/upload/pub/x.txt`, { method: "PUT", body: "0123456789", headers: { Authorization: basic() } });
      expect(stored.headers.get("Location")).toBe("/flag/pub/x.txt");
      const tooLarge = await fetch(`${node.url}/upload/pub/y.txt`, { method: "PUT", body: "0123456789A", headers: { Authorization: basic() } });
      expect(tooLarge.status).toBe(413);
    } finally {
      await node.stop();
    }
  });

  it("prints usage for an unknown command and its version on request", async () => {
    const unknown = await runCli(["frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");
    expect(unknown.stderr).toContain("Usage: nanocdn <command>");
    const pkg = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8"));
    const version = await runCli(["--version"]);
    expect(version.stdout.trim()).toBe(pkg.version);
  });

  it("runs on embedded defaults: node 1 on 127.0.0.1:8080 with ./data and a first user whose password it keeps out of its log", async () => {
    await requirePortFree(8080);
    const cwd = await tempDir();
    const start = () => {
      // As `npx nanocdn serve` runs it: the bin as a program.
      const child = spawn(BIN, ["serve"], { cwd, env: { ...process.env, UV_THREADPOOL_SIZE: undefined }, stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      child.stdout.on("data", (c) => (output += c));
      child.stderr.on("data", (c) => (output += c));
      const exited = new Promise((r) => child.on("exit", r));
      return { child, output: () => output, exited };
    };
    const waitUp = async (out: () => string) => {
      for (let i = 0; i < 300 && !out().includes("nanocdn node listening"); i++) await new Promise((r) => setTimeout(r, 100));
    };
    const first = start();
    try {
      await waitUp(first.output);
      expect(first.output()).toContain('"url":"http://127.0.0.1:8080"');
      // The bin's shell line started Node.js (in its own place) with 32 threads for file system calls, and they run.
      expect((await readFile(`/proc/${first.child.pid}/environ`, "latin1")).split("\0")).toContain("UV_THREADPOOL_SIZE=32");
      expect((await readdir(`/proc/${first.child.pid}/task`)).length).toBeGreaterThanOrEqual(32);
      expect((await stat(join(cwd, "data", "htpasswd"))).mode & 0o777).toBe(0o600);
      const copy = join(cwd, "data", "initial-credentials");
      expect((await stat(copy)).mode & 0o777).toBe(0o600);
      const password = /^admin:(\S+)\n$/.exec(await readFile(copy, "utf8"))?.[1];
      expect(password).toBeDefined();
      // Its output is a pipe here, as under systemd (the journal): a log, which learns only where the password is.
      expect(first.output()).not.toContain(password);
      expect(first.output()).toContain(`password: in ${copy} (mode 600; not printed, since this output is not a terminal)`);
      expect(first.output()).toContain(`The users are in ${join(cwd, "data", "htpasswd")}`);
      const created = await fetch("http://127.0.0.1:8080/upload/pub/hello.txt", {
        method: "PUT",
        body: "Hello world",
        headers: { Authorization: basic("admin", password) },
      });
      expect(created.status).toBe(201);
      expect(await readFile(join(cwd, "data", "files", "1", "pub", "hello.txt"), "utf8")).toBe("Hello world");
    } finally {
      first.child.kill("SIGTERM");
      await first.exited;
    }
    const second = start();
    try {
      await waitUp(second.output);
      expect(second.output()).not.toContain("password:");
    } finally {
      second.child.kill("SIGTERM");
      await second.exited;
    }
  });
});
