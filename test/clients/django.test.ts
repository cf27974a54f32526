import { spawn, spawnSync } from "node:child_process";
import { cp, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STEADY_PEERS, startCluster, type TestCluster, untilSettled } from "../helpers/cluster.ts";
import { PASSWORD, USER } from "../helpers/credentials.ts";
import { type FreezableNode, startFreezableNode } from "../helpers/hung-node.ts";
import { type NodeProcess, startNodeProcess } from "../helpers/node-process.ts";
import { makeSelfSigned } from "../helpers/tls.ts";

/**
 * Debian's Python, which sees Debian's python3-django (the first python3 on
 * PATH may not); NANOCDN_TEST_PYTHON names another, e.g. a virtualenv with
 * a newer Django.
 */
const PYTHON = process.env.NANOCDN_TEST_PYTHON ?? "/usr/bin/python3";
const CLIENT = resolve(import.meta.dirname, "../../clients/django");
const SUITE_TIMEOUT_MS = 150_000;
/** Nodes 1-3 refuse bodies over this (413), so that the suite can see a refusal. */
const MAX_UPLOAD_BYTES = 10 * 1024 * 1024;

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

/** Runs the Python suite (or the tests `labels` name) to its end, killing it if it hangs, so no process outlives the test. */
function runPythonSuite(env: Record<string, string>, labels: string[] = []): Promise<RunResult> {
  return new Promise((done, fail) => {
    const childEnv: Record<string, string | undefined> = { ...process.env, ...env, PYTHONDONTWRITEBYTECODE: "1" };
    delete childEnv.PYTHONPATH;
    delete childEnv.PYTHONHOME;
    const child = spawn(PYTHON, ["runtests.py", ...labels], { cwd: CLIENT, env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
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

/** Neither exited nor killed by a signal (a killed process has no exit code either). */
function running(node: NodeProcess): boolean {
  return node.child.exitCode === null && node.child.signalCode === null;
}

function expectPassed(result: RunResult, labels: string[], tests: RegExp): void {
  const report = `${PYTHON} runtests.py ${labels.join(" ")} in ${CLIENT} exited with ${result.code ?? result.signal}:\n${result.output}`;
  expect(result.code, report).toBe(0);
  expect(result.output, report).toMatch(tests);
  expect(result.output, report).toMatch(/^OK$/m);
}

describe("Django storage backend (clients/django)", () => {
  let cluster: TestCluster | undefined;
  const others: NodeProcess[] = [];
  let freezable: FreezableNode | undefined;
  let tlsDir = "";
  let tlsCert = "";
  let env: Record<string, string> = {};

  beforeAll(async () => {
    tlsDir = await mkdtemp(join(tmpdir(), "nanocdn-django-tls-"));
    const { cert, key } = makeSelfSigned(tlsDir, "127.0.0.1");
    tlsCert = cert;
    // Nodes 1 and 2: a cluster replicating with rsync, for nearly every test; node 1 is SIGKILLed
    // by tests/cluster_kill.py. Node 3 on its own, whose store a test breaks (in the cluster, node 1
    // would pass the upload to node 2 instead of answering 503). Node 4 on its own, serving HTTPS.
    // Node 5 on its own, in its own process group, which a test stops (SIGSTOP) as a hung machine.
    const started = await Promise.allSettled([
      startCluster({ size: 2, replicate: true, config: { max_upload_bytes: MAX_UPLOAD_BYTES, ...STEADY_PEERS } }),
      startNodeProcess({ config: { node: "3", max_upload_bytes: MAX_UPLOAD_BYTES } }),
      startNodeProcess({ config: { node: "4", tls_cert: cert, tls_key: key }, waitFor: "listening" }),
      startFreezableNode({ config: { node: "5", max_upload_bytes: MAX_UPLOAD_BYTES } }),
    ]);
    const [clustered, third, fourth, fifth] = started;
    if (clustered!.status === "fulfilled") cluster = clustered!.value as TestCluster;
    for (const result of [third, fourth]) if (result!.status === "fulfilled") others.push(result!.value as NodeProcess);
    if (fifth!.status === "fulfilled") freezable = fifth!.value as FreezableNode;
    const failed = started.find((result) => result.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    await untilSettled(cluster!);
    const entry = (id: string, node: NodeProcess, clustered: boolean) => ({
      id,
      url: node.url,
      pid: node.child.pid,
      data: node.data,
      max_upload_bytes: MAX_UPLOAD_BYTES,
      cluster: clustered,
    });
    env = {
      NANOCDN_TEST_NODES: JSON.stringify([
        entry("1", cluster!.nodes["1"]!, true),
        entry("2", cluster!.nodes["2"]!, true),
        entry("3", others[0]!, false),
        { ...entry("5", freezable!, false), process_group: true },
      ]),
      NANOCDN_TEST_TLS: JSON.stringify({ url: others[1]!.url.replace("http:", "https:"), ca: tlsCert }),
      NANOCDN_TEST_USER: USER,
      NANOCDN_TEST_PASSWORD: PASSWORD,
    };
  }, 90_000);

  afterAll(async () => {
    await Promise.all([cluster?.stopAll(), ...others.map((node) => node.stop()), freezable?.kill()]);
    if (tlsDir) await rm(tlsDir, { recursive: true, force: true });
  });

  it(
    "passes its Python suite against a two-node cluster (and two nodes on their own)",
    async () => {
      const result = await runPythonSuite(env);
      expectPassed(result, [], /^Ran \d+ tests? in /m);
      // Every node is still up: killing is the next test's business.
      for (const node of [...Object.values(cluster!.nodes), ...others, freezable!]) expect(running(node), node.url).toBe(true);
    },
    SUITE_TIMEOUT_MS + 10_000,
  );

  it(
    "keeps reading, saving and refusing deletes as it should when node 1 of the cluster is SIGKILLed mid-test",
    async () => {
      // The nodes must be as a fresh start would leave them (a test above broke node 1's store a while).
      await untilSettled(cluster!);
      const labels = ["tests.cluster_kill"];
      const result = await runPythonSuite(env, labels);
      expectPassed(result, labels, /^Ran 1 test in /m);
      // The suite really killed node 1, and only node 1.
      expect(await cluster!.nodes["1"]!.exited).toBe("SIGKILL");
      for (const node of [cluster!.nodes["2"]!, ...others]) expect(running(node), node.url).toBe(true);
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
      const build = spawnSync(PYTHON, ["-m", "pip", "wheel", "--no-build-isolation", "--no-index", "--no-deps", "-q", "-w", join(dir, "out"), source], {
        encoding: "utf8",
      });
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
      expect(check.stdout.trim()).toMatch(/^NanoCdnStorage \['Requires-Dist: Django ?\(?>=3\.2\)?'\]$/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
