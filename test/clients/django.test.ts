import { execFileSync, spawn, spawnSync } from "node:child_process";
import { cp, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PASSWORD, USER } from "../helpers/credentials.ts";
import { type NodeProcess, startNodeProcess } from "../helpers/node-process.ts";

/** Debian's Python, which sees Debian's python3-django (the first python3 on PATH may not). */
const PYTHON = "/usr/bin/python3";
const CLIENT = resolve(import.meta.dirname, "../../clients/django");
const SUITE_TIMEOUT_MS = 150_000;
/** Nodes 1-3 refuse bodies over this (413), so that the suite can see a refusal. */
const MAX_UPLOAD_BYTES = 10 * 1024 * 1024;

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

/** Runs the Python suite to its end, killing it if it hangs, so no process outlives the test. */
function runPythonSuite(env: Record<string, string>): Promise<RunResult> {
  return new Promise((done, fail) => {
    const childEnv: Record<string, string | undefined> = { ...process.env, ...env, PYTHONDONTWRITEBYTECODE: "1" };
    delete childEnv.PYTHONPATH;
    delete childEnv.PYTHONHOME;
    const child = spawn(PYTHON, ["runtests.py"], { cwd: CLIENT, env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    const guard = setTimeout(() => {
      output += `\n[killed: the suite ran longer than ${SUITE_TIMEOUT_MS} ms]\n`;
      child.kill("SIGKILL");
    }, SUITE_TIMEOUT_MS);
    child.on("error", (error) => {
      clearTimeout(guard);
      fail(error);
    });
    child.on("close", (code, signal) => {
      clearTimeout(guard);
      done({ code, signal, output });
    });
  });
}

/** A self-signed certificate for 127.0.0.1 (EC: quick to make on a slow machine). */
function makeCertificate(dir: string): { cert: string; key: string } {
  const cert = join(dir, "node.crt");
  const key = join(dir, "node.key");
  execFileSync(
    "openssl",
    [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
      "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert,
    ],
    { stdio: "ignore" },
  );
  return { cert, key };
}

describe("Django storage backend (clients/django)", () => {
  const nodes: NodeProcess[] = [];
  let tlsDir = "";
  let tlsCert = "";

  beforeAll(async () => {
    tlsDir = await mkdtemp(join(tmpdir(), "nanocdn-django-tls-"));
    const { cert, key } = makeCertificate(tlsDir);
    tlsCert = cert;
    // Independent nodes (no cluster): 1 and 2 for most tests, 3 for the suite to SIGKILL mid-run,
    // 4 serving HTTPS itself.
    const started = await Promise.allSettled([
      ...["1", "2", "3"].map((id) => startNodeProcess({ config: { node: id, max_upload_bytes: MAX_UPLOAD_BYTES } })),
      startNodeProcess({ config: { node: "4", tls_cert: cert, tls_key: key }, waitFor: "listening" }),
    ]);
    for (const result of started) if (result.status === "fulfilled") nodes.push(result.value);
    const failed = started.find((result) => result.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  });

  afterAll(async () => {
    await Promise.all(nodes.map((node) => node.stop()));
    if (tlsDir) await rm(tlsDir, { recursive: true, force: true });
  });

  it(
    "passes its Python suite against real nodes, one of them killed mid-run",
    async () => {
      const result = await runPythonSuite({
        NANOCDN_TEST_NODES: JSON.stringify(
          nodes.slice(0, 3).map((node, i) => ({
            id: String(i + 1),
            url: node.url,
            pid: node.child.pid,
            data: node.data,
            max_upload_bytes: MAX_UPLOAD_BYTES,
          })),
        ),
        NANOCDN_TEST_TLS: JSON.stringify({ url: nodes[3]!.url.replace("http:", "https:"), ca: tlsCert }),
        NANOCDN_TEST_USER: USER,
        NANOCDN_TEST_PASSWORD: PASSWORD,
      });
      const report = `${PYTHON} runtests.py in ${CLIENT} exited with ${result.code ?? result.signal}:\n${result.output}`;
      expect(result.code, report).toBe(0);
      expect(result.output, report).toMatch(/^Ran \d+ tests? in /m);
      expect(result.output, report).toMatch(/^OK$/m);
      // The suite really killed node 3 (and only node 3).
      expect(await nodes[2]!.exited).toBe("SIGKILL");
      expect(nodes[0]!.child.exitCode).toBeNull();
      expect(nodes[1]!.child.exitCode).toBeNull();
      expect(nodes[3]!.child.exitCode).toBeNull();
    },
    SUITE_TIMEOUT_MS + 10_000,
  );

  // Needs pip for Debian's Python (python3-pip, which .ci/run installs).
  it("builds with pip from its folder, into a wheel that imports", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nanocdn-django-wheel-"));
    try {
      // A copy: pip builds in the source folder, and must leave nothing behind in the repository.
      const source = join(dir, "src");
      await cp(CLIENT, source, { recursive: true, filter: (path) => !path.includes("__pycache__") });
      const build = spawnSync(
        PYTHON,
        ["-m", "pip", "wheel", "--no-build-isolation", "--no-index", "--no-deps", "-q", "-w", join(dir, "out"), source],
        { encoding: "utf8" },
      );
      expect(build.status, `${build.stdout}${build.stderr}`).toBe(0);
      const wheels = await readdir(join(dir, "out"));
      expect(wheels).toEqual(["nanocdn_django-0.1.0-py3-none-any.whl"]);
      const wheel = join(dir, "out", wheels[0]!);
      const check = spawnSync(
        PYTHON,
        [
          "-c",
          [
            "import sys, zipfile",
            "sys.path.insert(0, sys.argv[1])",
            "import nanocdn_django",
            "assert nanocdn_django.__file__.startswith(sys.argv[1]), nanocdn_django.__file__",
            "meta = zipfile.ZipFile(sys.argv[1]).read('nanocdn_django-0.1.0.dist-info/METADATA').decode()",
            "print(nanocdn_django.NanoCdnStorage.__name__, [l for l in meta.splitlines() if l.startswith('Requires-Dist')])",
          ].join("\n"),
          wheel,
        ],
        { encoding: "utf8", cwd: dir },
      );
      expect(check.status, `${check.stdout}${check.stderr}`).toBe(0);
      // setuptools writes "Django>=3.2" or "Django (>=3.2)" depending on its version.
      expect(check.stdout.trim()).toMatch(/^NanoCdnStorage \['Requires-Dist: Django \(?>=3\.2\)?'\]$/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
