import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.ts";
import { basic, writeHtpasswd } from "../helpers/credentials.ts";
import { eventually } from "../helpers/eventually.ts";
import { startNodeProcess } from "../helpers/node-process.ts";
import { freePort } from "../helpers/ports.ts";
import { inSeconds, signedPath, URL_SIGNING_KEY_FILE, URL_SIGNING_KEYS } from "../helpers/signed-urls.ts";

describe("URL signing keys on the command line", () => {
  it("refuse to start a node, or to sign, with a key file that holds no usable key, and never print a key", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nanocdn-keys-"));
    const keyFile = join(dir, "url-signing.keys");
    await writeHtpasswd(join(dir, "htpasswd"));
    const config = join(dir, "nanocdn.toml");
    await writeFile(
      config,
      `listen = "127.0.0.1:${await freePort()}"\ndata = "${join(dir, "data")}"\nhtpasswd = "${join(dir, "htpasswd")}"\nworkers = 1\nurl_signing_secret_file = "${keyFile}"\n`,
    );
    for (const [text, reason] of [
      ["\n  \n", "holds no key"],
      ["a-good-long-signing-key-0123456789\nshort-secret\n", "key 2 is shorter than 16 characters"],
    ] as const) {
      await writeFile(keyFile, text, { mode: 0o600 });
      const serve = await runCli(["serve", "--config", config]);
      expect(serve.code).not.toBe(0);
      expect(serve.stderr).toContain(`${keyFile} ${reason}`);
      const sign = await runCli(["sign", "--config", config, "/1/priv/a.txt"]);
      expect(sign.code).not.toBe(0);
      expect(sign.stderr).toContain(reason);
      for (const output of [serve.stdout, serve.stderr, sign.stdout, sign.stderr]) {
        expect(output).not.toContain("short-secret");
        expect(output).not.toContain("a-good-long-signing-key");
      }
    }
  });

  it("`nanocdn sign` refuses what it cannot sign, with its usage", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nanocdn-keys-"));
    const keyFile = join(dir, "url-signing.keys");
    await writeFile(keyFile, "a-good-long-signing-key-0123456789\n", { mode: 0o600 });
    const config = join(dir, "nanocdn.toml");
    await writeFile(config, `url_signing_secret_file = "${keyFile}"\n`);
    const cases: [string[], RegExp][] = [
      [["/1/pub/a.txt"], /not a private file/],
      [["/9/priv/a.txt"], /neither a node of this cluster/],
      [["/1/priv/a.txt", "--ttl", "0"], /--ttl takes a positive number of seconds[\s\S]*Usage: nanocdn sign/],
      [["/1/priv/a.txt", "--ttl", "99999999999999"], /--ttl reaches past the last moment a link can name[\s\S]*Usage: nanocdn sign/],
      [[], /missing \/<node>\/priv\/<path>[\s\S]*Usage: nanocdn sign/],
    ];
    for (const [args, message] of cases) {
      const result = await runCli(["sign", "--config", config, ...args]);
      expect(result.code, args.join(" ")).not.toBe(0);
      expect(result.stderr, args.join(" ")).toMatch(message);
    }
    const noKeys = join(dir, "no-keys.toml");
    await writeFile(noKeys, "");
    const unsigned = await runCli(["sign", "--config", noKeys, "/1/priv/a.txt"]);
    expect(unsigned.stderr).toMatch(/url_signing_secret_file: needed to sign URLs/);
    // Like every command that reads the configuration, sign takes its keys as flags too.
    const flagged = await runCli(["sign", "--config", noKeys, "--url-signing-secret-file", keyFile, "/1/priv/a.txt"]);
    expect(flagged.code, flagged.stderr).toBe(0);
    expect(flagged.stdout).toMatch(/^\/1\/priv\/a\.txt\?expires=\d+&signature=[0-9a-f]{64}\n$/);
  });

  it("are read again by every serving process on SIGHUP, changed or not", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nanocdn-keys-"));
    const keyFile = join(dir, "url-signing.keys");
    await writeFile(keyFile, URL_SIGNING_KEY_FILE, { mode: 0o600 });
    const node = await startNodeProcess({ dir, config: { workers: 2, url_signing_secret_file: keyFile } });
    try {
      const loads = () =>
        node
          .output()
          .split("\n")
          .filter((line) => line.includes('"msg":"URL signing keys loaded"')).length;
      await eventually(async () => expect(loads()).toBe(2));
      // The primary takes signals once it has started.
      await eventually(async () => expect(node.output()).toContain('"msg":"nanocdn node listening"'));
      node.child.kill("SIGHUP");
      await eventually(async () => expect(loads()).toBe(4));
      // Still the same keys: a link signed with the second one works.
      const created = await fetch(`${node.url}/upload/priv/sighup.txt`, { method: "PUT", body: "hup", headers: { Authorization: basic() } });
      const read = await fetch(node.url + signedPath(created.headers.get("Location")!, inSeconds(60), URL_SIGNING_KEYS[1]));
      expect(await read.text()).toBe("hup");
    } finally {
      await node.stop();
    }
  });
});
