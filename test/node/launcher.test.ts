import { existsSync, readFileSync } from "node:fs";
import { execFileSync, spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Launcher, spawnLaunch } from "../../src/adapters/node/replication/launcher.ts";
import { eventually } from "../helpers/eventually.ts";
import { allProcesses } from "../helpers/processes.ts";

/** Pids of the bash processes launchers of this test process run. */
const launcherBashes = () =>
  allProcesses()
    .filter(({ command, ppid }) => ppid === process.pid && command.startsWith("bash ") && command.endsWith(" nanocdn-launcher"))
    .map(({ pid }) => pid);

// What every program sees: its arguments one per line, an environment variable on stderr, its stdin back on stdout.
const ECHO = ["-c", 'printf "<%s>\\n" "$@"; printf "X=%s" "$X" >&2; cat; exit 3', "sh"];
const AWKWARD = ["two words", 'it\'s "quoted"', "new\nline", "", "ünïcode", "$HOME `id` \\ *"];

describe("a launcher: short-lived programs started by one bash", () => {
  let parent: string;
  let dir: string;
  let launcher: Launcher;

  beforeEach(async () => {
    parent = await mkdtemp(join(tmpdir(), "nanocdn-launcher-"));
    launcher = await Launcher.open(parent);
    dir = join(parent, (await readdir(parent))[0]!);
  });
  afterEach(() => launcher.close());

  it("passes arguments, environment and input as they are, and returns the exit status or signal and the outputs, as Node's spawn does", async () => {
    const options = { env: { X: "a=b c" }, input: "in\0put\n" };
    const launched = await launcher.launch("sh", [...ECHO, ...AWKWARD], options);
    expect(launched).toEqual(await spawnLaunch("sh", [...ECHO, ...AWKWARD], options));
    expect(launched).toEqual({ code: 3, stdout: `${AWKWARD.map((arg) => `<${arg}>\n`).join("")}in\0put\n`, stderr: "X=a=b c" });
    // Ended by a signal: bash's 128 + N, told as Node tells it.
    const killed = await launcher.launch("sh", ["-c", "echo going; kill -KILL $$"]);
    expect(killed).toEqual({ code: null, killedBy: "SIGKILL", stdout: "going\n", stderr: "" });
    expect(killed).toEqual(await spawnLaunch("sh", ["-c", "echo going; kill -KILL $$"]));
    // Nothing given: stdin is empty (printf prints its format once).
    expect((await launcher.launch("sh", ECHO)).stdout).toBe("<>\n");
    // Its files go with it.
    expect(await readdir(dir)).toEqual([]);
  });

  it("runs programs side by side and keeps the end of long outputs", async () => {
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: 5 }, (_, i) => launcher.launch("sh", ["-c", `sleep 1; echo ${i}`])));
    expect(results.map((r) => r.stdout)).toEqual(["0\n", "1\n", "2\n", "3\n", "4\n"]);
    expect(Date.now() - started).toBeLessThan(4500);
    const long = await launcher.launch("sh", ["-c", "seq 1 100000"]);
    expect(long.stdout.length).toBeLessThanOrEqual(8192);
    expect(long.stdout.endsWith("99999\n100000\n")).toBe(true);
  });

  it("ends a program when its signal aborts, answering at once", async () => {
    const pidFile = join(parent, "pid");
    const halting = new AbortController();
    const running = launcher.launch("sh", ["-c", `echo $$ > ${pidFile}; exec sleep 60`], { signal: halting.signal });
    let pid = 0;
    await eventually(async () => {
      pid = Number(await readFile(pidFile, "utf8"));
      expect(pid).toBeGreaterThan(0);
    });
    expect(existsSync(`/proc/${pid}`)).toBe(true);
    halting.abort();
    expect(await running).toMatchObject({ code: null, error: "ended" });
    await eventually(async () => expect(existsSync(`/proc/${pid}`)).toBe(false));
    // Aborted before it began: it never runs.
    const early = await launcher.launch("sh", ["-c", `echo started > ${pidFile}`], { signal: AbortSignal.abort() });
    expect(early.code).toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await readFile(pidFile, "utf8")).toBe(`${pid}\n`);
    await eventually(async () => expect(await readdir(dir)).toEqual([]));
  });

  it("hears from the runs of a bash that died, starts a new one for the next, and answers a run whose subshell was killed", async () => {
    const pidFile = join(parent, "pid");
    const running = launcher.launch("sh", ["-c", `echo $$ > ${pidFile}; sleep 1; echo done`]);
    // Killed once the run has started: a run the bash had not yet started would never report.
    await eventually(async () => expect(Number(await readFile(pidFile, "utf8"))).toBeGreaterThan(0));
    const bashes = launcherBashes();
    expect(bashes).toHaveLength(1);
    const bash = bashes[0]!;
    process.kill(bash, "SIGKILL");
    // The subshell that waits for it still says how it ended.
    expect(await running).toEqual({ code: 0, stdout: "done\n", stderr: "" });
    expect(await launcher.launch("sh", ["-c", "echo again"])).toEqual({ code: 0, stdout: "again\n", stderr: "" });
    expect(launcherBashes()).not.toContain(bash);
    // Nothing will say how this one ended: it is answered once its process is gone.
    await rm(pidFile);
    const lost = launcher.launch("sh", ["-c", `echo $$ > ${pidFile}; exec sleep 2`]);
    let pid = 0;
    await eventually(async () => {
      pid = Number(await readFile(pidFile, "utf8"));
      expect(pid).toBeGreaterThan(0);
    });
    const subshell = Number(/^\d+ \(.*\) \S (\d+)/.exec(readFileSync(`/proc/${pid}/stat`, "utf8"))![1]);
    process.kill(subshell, "SIGKILL");
    expect(await lost).toMatchObject({ code: null, error: expect.stringContaining("without reporting") });
  });

  it("starts a run with Node's spawn when its folder was taken away, and gives the next runs a new one", async () => {
    await rm(dir, { recursive: true });
    expect(await launcher.launch("cat", [], { input: "through spawn" })).toEqual({ code: 0, stdout: "through spawn", stderr: "" });
    const { stdout } = await launcher.launch("sh", ["-c", "cat; readlink /proc/self/fd/1"], { input: "x" });
    expect(stdout).toMatch(new RegExp(`^x${parent}/nanocdn-runs-${process.pid}-\\w+/\\d+\\.out\n$`));
    expect(stdout).not.toContain(dir);
  });

  it("starts a run with Node's spawn when its input does not fit in its folder, and leaves none of it there", async () => {
    // A full /dev/shm: a folder on a file system of 64 KiB.
    const small = await mkdtemp(join(tmpdir(), "nanocdn-launcher-full-"));
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", small]);
    const full = await Launcher.open(small);
    try {
      const input = "x".repeat(256 * 1024);
      const ran = await full.launch("wc", ["-c"], { input });
      expect([ran.code, ran.stdout.trim()]).toEqual([0, String(input.length)]);
      const [folder] = await readdir(small);
      expect(await readdir(join(small, folder!))).toEqual([]);
    } finally {
      await full.close();
      execFileSync("umount", [small]);
      await rm(small, { recursive: true, force: true });
    }
  });

  it("sweeps the folders that processes gone left, and runs the program, not a function of that name", async () => {
    const gone = spawn("true");
    await new Promise((resolve) => gone.on("exit", resolve));
    const names = [`nanocdn-runs-${gone.pid}-left`, `nanocdn-runs-${process.pid}-mine`, "something-else"];
    for (const name of names) await mkdir(join(parent, name));
    await writeFile(join(parent, names[0]!, "3.in"), "a list of names");
    const another = await Launcher.open(parent);
    process.env["BASH_FUNC_sh%%"] = "() { echo a function; }";
    try {
      expect((await readdir(parent)).filter((name) => names.includes(name)).sort()).toEqual(names.slice(1).sort());
      expect(await another.launch("sh", ["-c", "echo the program"])).toMatchObject({ stdout: "the program\n" });
    } finally {
      delete process.env["BASH_FUNC_sh%%"];
      await another.close();
    }
  });

  it("says why a program could not start or be given its arguments, and takes its folder away when closed", async () => {
    expect(dir).toMatch(new RegExp(`/nanocdn-runs-${process.pid}-\\w+$`));
    const missing = await launcher.launch("/nonexistent/program", []);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toContain("/nonexistent/program");
    // A NUL would end a field early; the next field would be taken for a program.
    expect(await launcher.launch("sh", ["-c", "echo never", "a\0touch /tmp/x"])).toMatchObject({ code: null, error: expect.stringContaining("NUL") });
    expect(await launcher.launch("sh", ["-c", "echo never"], { env: { X: "\0" } })).toMatchObject({ code: null, error: expect.stringContaining("NUL") });
    expect(await launcher.launch("sh", ["-c", "echo still in step"])).toEqual({ code: 0, stdout: "still in step\n", stderr: "" });
    await launcher.close();
    expect(await readdir(parent)).toEqual([]);
    expect(await launcher.launch("true", [])).toMatchObject({ code: null, error: "the node is stopping" });
  });

  it("keeps its files in memory, in a folder of its own", async () => {
    const inMemory = await Launcher.open();
    try {
      // A program's stdout is the file its output goes to.
      const { stdout } = await inMemory.launch("readlink", ["/proc/self/fd/1"]);
      expect(stdout).toMatch(new RegExp(`^/dev/shm/nanocdn-runs-${process.pid}-\\w+/1\\.out\n$`));
      expect((await stat(dirname(stdout))).mode & 0o777).toBe(0o700);
    } finally {
      await inMemory.close();
    }
  });
});
