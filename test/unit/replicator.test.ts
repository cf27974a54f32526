import { lstat, mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { defaultMaxBatches, Replicator, type ReplicatorOptions } from "../../src/adapters/node/replication/replicator.ts";
import type { RsyncOptions, RsyncResult } from "../../src/adapters/node/replication/rsync.ts";
import type { Launch } from "../../src/adapters/node/replication/launcher.ts";
import { quiet } from "../helpers/quiet-log.ts";

/** One rsync run the replicator asked for: whether it was a full pass, and the listed paths of a batch. */
interface Run {
  at: number;
  peer: string;
  full: boolean;
  paths: string[];
  args: string[];
  /** How rsync was to be started: the launcher given, or none for Node's spawn. */
  launch?: Launch;
}

/** What rsync answers for a run that went well. */
const SUCCEEDED: RsyncResult = { ok: true, code: 0, message: "" };

/** The paths of a run without the metadata files that travel with them. */
const blobsOf = (run: Run | undefined) => run?.paths.filter((p) => !p.startsWith("meta/"));

/** A stand-in for rsync that records each run and answers what the test says. */
function fakeRsync() {
  const runs: Run[] = [];
  type Answer = (options: RsyncOptions, args: string[]) => RsyncResult | Promise<RsyncResult>;
  let answer: Answer = () => SUCCEEDED;
  const run: NonNullable<ReplicatorOptions["runRsync"]> = async (args, options, input) => {
    // A daemon destination: a local folder would make the replicator touch the disk, which fake timers cannot wait for.
    const destination = args.at(-1)!;
    runs.push({
      at: Date.now(),
      peer: /rsync:\/\/peer-(\d+)\//.exec(destination)![1]!,
      full: args.includes("--delete"),
      paths: input ? input.split("\0") : [],
      args,
      launch: options.launch,
    });
    return answer(options, args);
  };
  return { runs, run, answer: (a: Answer) => (answer = a) };
}

describe("Replicator (rsync runner injected)", () => {
  let folder: string;
  let rsync: ReturnType<typeof fakeRsync>;
  let up: Set<string>;
  let replicator: Replicator;

  beforeEach(async () => {
    vi.useFakeTimers();
    folder = await mkdtemp(join(tmpdir(), "nanocdn-replicator-"));
    rsync = fakeRsync();
    up = new Set(["2", "3"]);
  });
  afterEach(() => {
    replicator?.stop();
    vi.useRealTimers();
  });

  function start(overrides: Partial<ReplicatorOptions> = {}) {
    replicator = new Replicator({
      self: "1",
      source: join(folder, "own"),
      targets: ["2", "3"].map((id) => ({ id, destination: `rsync://peer-${id}/nanocdn/1` })),
      rsync: { connectTimeoutS: 1, ioTimeoutS: 10 },
      batchMs: 100,
      syncCopies: 1,
      syncWaitMs: 5000,
      fullPassIntervalMs: 600_000,
      maxPending: 1000,
      isUp: (id) => up.has(id),
      log: quiet,
      runRsync: rsync.run,
      ...overrides,
    });
    replicator.enable({ pullFrom: [], pulled: async () => {}, inPlace: async () => true, confirm: async () => {} });
    return replicator;
  }
  const runsOf = (peer: string) => rsync.runs.filter((r) => r.peer === peer);
  /** From now on every run waits until the test ends it: each run's ending, in the order they started. */
  function holdRuns(): ((result: RsyncResult) => void)[] {
    const held: ((result: RsyncResult) => void)[] = [];
    rsync.answer(() => new Promise((resolve) => held.push(resolve)));
    return held;
  }

  it("starts with a full pass to every peer, and runs one again on the interval", async () => {
    start({ fullPassIntervalMs: 60_000 });
    await vi.advanceTimersByTimeAsync(10);
    expect(rsync.runs.map((r) => [r.peer, r.full])).toEqual([
      ["2", true],
      ["3", true],
    ]);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(runsOf("2").filter((r) => r.full)).toHaveLength(2);
  });

  it("sends the changes of one batch window in one run, listing only those paths", async () => {
    start();
    await vi.advanceTimersByTimeAsync(10);
    rsync.runs.length = 0;
    replicator.changed({ kind: "created", key: "1/pub/a.txt" });
    replicator.changed({ kind: "created", key: "1/pub/b.txt" });
    replicator.changed({ kind: "deleted", key: "1/priv/x/y/c.txt" });
    replicator.changed({ kind: "created", key: "2/pub/not-mine.txt" });
    await vi.advanceTimersByTimeAsync(50);
    expect(rsync.runs).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(60);
    const batch = runsOf("2");
    expect(batch).toHaveLength(1);
    expect(batch[0]!.full).toBe(false);
    // Each file travels with its metadata sidecar; a delete lists the folders
    // above it (deepest first), so pruned folders go too.
    const paths = batch[0]!.paths;
    expect(paths.filter((p) => !p.startsWith("meta/"))).toEqual(["priv/x/y/c.txt", "priv/x/y", "pub/a.txt", "pub/b.txt", "priv/x"]);
    expect(paths.filter((p) => p.startsWith("meta/"))).toEqual(expect.arrayContaining(["meta/pub/a.txt", "meta/pub/b.txt", "meta/priv/x/y/c.txt"]));
    expect(paths.indexOf("meta/priv/x/y/c.txt")).toBeLessThan(paths.indexOf("meta/priv/x/y"));
    expect(replicator.status().find((s) => s.peer === "2")).toMatchObject({ backlog: 0, needsFullPass: false });
  });

  it("asks the peer's rsync to fsync the copies of a batch, not those of a full pass, with peerFsync", async () => {
    for (const peerFsync of [true, false]) {
      start({ peerFsync });
      await vi.advanceTimersByTimeAsync(10);
      replicator.changed({ kind: "created", key: "1/pub/a.txt" });
      await vi.advanceTimersByTimeAsync(200);
      const [full, batch] = runsOf("2");
      expect([full!.full, batch!.full]).toEqual([true, false]);
      expect([full!.args.includes("--fsync"), batch!.args.includes("--fsync")], `peerFsync ${peerFsync}`).toEqual([false, peerFsync]);
      replicator.stop();
      rsync.runs.length = 0;
    }
  });

  it("with peerFsync sends an upload waiting for its copy in a batch before a full pass that would carry it unsynced", async () => {
    await startOnePeer({ peerFsync: true, syncCopies: 2 });
    // The upload comes as a full pass is due.
    replicator.fullPass("2");
    let copies: number | undefined;
    void replicator.changed({ kind: "created", key: "1/pub/a.txt" }).then((n) => (copies = n));
    await vi.advanceTimersByTimeAsync(200);
    expect(rsync.runs.map((run) => [run.full, run.args.includes("--fsync"), blobsOf(run)])).toEqual([
      [false, true, ["pub/a.txt"]],
      [true, false, []],
    ]);
    expect(copies).toBe(2);
  });

  it("with peerFsync sends an upload waiting for its copy before full passes asked for again and again", async () => {
    await startOnePeer({ peerFsync: true, syncCopies: 2 });
    const held = holdRuns();
    replicator.fullPass("2");
    await vi.advanceTimersByTimeAsync(1);
    let copies: number | undefined;
    void replicator.changed({ kind: "created", key: "1/pub/a.txt" }).then((n) => (copies = n));
    // The peer flaps: a pass is asked for again while each run is under way.
    for (let i = 0; i < 20 && copies === undefined; i++) {
      replicator.fullPass("2");
      for (const release of held.splice(0)) release(SUCCEEDED);
      await vi.advanceTimersByTimeAsync(5);
    }
    expect(copies).toBe(2);
    const batch = rsync.runs.find((run) => !run.full);
    expect([batch?.args.includes("--fsync"), blobsOf(batch)]).toEqual([true, ["pub/a.txt"]]);
    expect(Date.now() - (rsync.runs[0]?.at ?? 0)).toBeLessThan(1000);
  });

  it("with peerFsync lets one batch of waiting uploads go before a due full pass, then the pass, though uploads keep coming", async () => {
    await startOnePeer({ peerFsync: true, syncCopies: 2 });
    const held = holdRuns();
    replicator.fullPass("2");
    const names: string[] = [];
    const copies: Record<string, number | undefined> = {};
    const uploadOne = () => {
      const name = `pub/u${names.length}.txt`;
      names.push(name);
      void replicator.changed({ kind: "created", key: `1/${name}` }).then((n) => (copies[name] = n));
    };
    uploadOne();
    // An upload comes while each run is under way, for a while; then they stop.
    for (let i = 0; i < 12; i++) {
      await vi.advanceTimersByTimeAsync(5);
      if (i < 6) uploadOne();
      for (const release of held.splice(0)) release(SUCCEEDED);
    }
    expect(rsync.runs.slice(0, 2).map((run) => run.full)).toEqual([false, true]);
    // Each upload got its copy from a batch, which the peer fsyncs; none from the pass.
    const fsynced = rsync.runs.filter((run) => !run.full && run.args.includes("--fsync")).flatMap((run) => blobsOf(run) ?? []);
    expect(fsynced.sort()).toEqual([...names].sort());
    expect(Object.values(copies)).toEqual(names.map(() => 2));
  });

  it("turns off Nagle's algorithm on its connections to a peer's rsync daemon", async () => {
    // Else each run waits on delayed ACKs (some 40 ms each) where the protocol turns around; the daemon sets it on its side too.
    start();
    await vi.advanceTimersByTimeAsync(10);
    replicator.changed({ kind: "created", key: "1/pub/a.txt" });
    await vi.advanceTimersByTimeAsync(200);
    expect(rsync.runs.length).toBeGreaterThan(2);
    for (const run of rsync.runs) expect(run.args).toContain("--sockopts=TCP_NODELAY");
  });

  /** Starts with one peer, past its first full pass. */
  async function startOnePeer(overrides: Partial<ReplicatorOptions> = {}) {
    start({ targets: [{ id: "2", destination: "rsync://peer-2/nanocdn/1" }], ...overrides });
    await vi.advanceTimersByTimeAsync(10);
    rsync.runs.length = 0;
  }

  /**
   * From now on the peer may not write into its pub/locked/ (a permission, an
   * immutable folder): a batch carrying files there ends with exit 23, naming
   * them as the receiver does, a path of its own (test/unit/rsync-output.test.ts
   * has its words), and rsync carries the rest.
   */
  function refuseLocked() {
    rsync.answer(() => {
      const run = rsync.runs.at(-1)!;
      const locked = run.full ? [] : run.paths.filter((path) => path.startsWith("pub/locked/"));
      if (locked.length === 0) return SUCCEEDED;
      return { ok: false, code: 23, message: "some files/attrs were not transferred", refused: locked.map((path) => `/srv/replicas/1/${path}`) };
    });
  }

  /** One peer, past its first full pass, whose runs from now on answer `result`. */
  async function startFailing(result: RsyncResult) {
    await startOnePeer();
    rsync.answer(() => result);
  }

  /** Uploads `1/pub/<name>.txt`; its name goes into `answered`, if given, once replication answers it. */
  function upload(name: string, answered?: string[]): void {
    void replicator.changed({ kind: "created", key: `1/pub/${name}.txt` }).then(() => answered?.push(name));
  }

  it("lets the batches through while a full pass fails again and again, and tries the pass on its own back-off", async () => {
    await startOnePeer({ syncCopies: 2 });
    // rsync's exit 23 from a folder it cannot read, naming no file to set apart.
    rsync.answer((_, args) => (args.includes("--delete") ? { ok: false, code: 23, message: "some files/attrs were not transferred" } : SUCCEEDED));
    const passes = () => rsync.runs.filter((run) => run.full).length;
    replicator.fullPass();
    await vi.advanceTimersByTimeAsync(10);
    expect(passes()).toBe(1);
    // Right after a failure an upload does not wait for its copy; it goes in a batch all the same, before the pass's next try.
    expect(await replicator.changed({ kind: "created", key: "1/pub/a.txt" })).toBe(1);
    await vi.advanceTimersByTimeAsync(250);
    expect(rsync.runs.filter((run) => !run.full).map(blobsOf)).toEqual([["pub/a.txt"]]);
    // The batches work, so the next upload waits for its copy, and has it.
    const copies = replicator.changed({ kind: "created", key: "1/pub/b.txt" });
    await vi.advanceTimersByTimeAsync(50);
    expect(await copies).toBe(2);
    // Tried again 1 s after the first failure, then 2 s after the second.
    expect(passes()).toBe(1);
    await vi.advanceTimersByTimeAsync(700);
    expect(passes()).toBe(2);
    await vi.advanceTimersByTimeAsync(1980);
    expect(passes()).toBe(2);
    await vi.advanceTimersByTimeAsync(30);
    expect(passes()).toBe(3);
    rsync.answer(() => SUCCEEDED);
    await vi.advanceTimersByTimeAsync(4000);
    expect(passes()).toBe(4);
    expect(replicator.status()[0]).toMatchObject({ needsFullPass: false, backlog: 0 });
  });

  it("backs off after a failed push, doubling the wait, and keeps the paths until one succeeds", async () => {
    await startFailing({ ok: false, code: 10, message: "connection refused" });
    replicator.changed({ kind: "created", key: "1/pub/a.txt" });
    await vi.advanceTimersByTimeAsync(100);
    expect(rsync.runs).toHaveLength(1);
    expect(replicator.status()[0]).toMatchObject({ backlog: 1, lastError: "rsync exit 10: connection refused" });
    // 200 ms, then 400 ms, then 800 ms between attempts.
    await vi.advanceTimersByTimeAsync(199);
    expect(rsync.runs).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(rsync.runs).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(399);
    expect(rsync.runs).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(rsync.runs).toHaveLength(3);
    rsync.answer(() => SUCCEEDED);
    await vi.advanceTimersByTimeAsync(800);
    expect(rsync.runs).toHaveLength(4);
    expect(rsync.runs.every((r) => r.paths.join() === "meta/pub/a.txt,pub/a.txt")).toBe(true);
    const status = replicator.status()[0]!;
    expect(status.backlog).toBe(0);
    expect(status.lastError).toBeUndefined();
  });

  it("follows a batch with a delete rsync could carry only in part (exit 23) with a full pass, not the same batch again", async () => {
    // A file deleted, then a file put where its folder was: the listed path cannot even be looked at.
    await startFailing({ ok: false, code: 23, message: 'link_stat "pub/a/b" failed: Not a directory (20)' });
    replicator.changed({ kind: "deleted", key: "1/pub/a/b" });
    replicator.changed({ kind: "created", key: "1/pub/a" });
    await vi.advanceTimersByTimeAsync(100);
    expect(rsync.runs.map((r) => r.full)).toEqual([false]);
    rsync.answer(() => SUCCEEDED);
    await vi.advanceTimersByTimeAsync(200);
    expect(rsync.runs.map((r) => r.full)).toEqual([false, true]);
    expect(replicator.status()[0]).toMatchObject({ backlog: 0, needsFullPass: false });
  });

  it("with peerFsync still follows a batch that needs a full pass (exit 23) with the pass, while uploads wait for copies", async () => {
    await startOnePeer({ peerFsync: true, syncCopies: 2 });
    rsync.answer(() => ({ ok: false, code: 23, message: 'link_stat "pub/a/b" failed: Not a directory (20)' }));
    replicator.changed({ kind: "deleted", key: "1/pub/a/b" });
    await vi.advanceTimersByTimeAsync(100);
    rsync.answer(() => SUCCEEDED);
    // An upload comes: it does not wait for a peer backing off, so it does not take the full pass's turn.
    void replicator.changed({ kind: "created", key: "1/pub/a" });
    await vi.advanceTimersByTimeAsync(400);
    expect(rsync.runs.map((r) => r.full).slice(0, 2)).toEqual([false, true]);
    expect(replicator.status()[0]).toMatchObject({ needsFullPass: false });
  });

  it("sets apart a file the peer cannot write, so that the others go on, and tries it alone until it gets through", async () => {
    await startFailing(SUCCEEDED);
    const noSpace = { ok: false, code: 11, message: 'write failed on "/r/1/pub/big.bin": No space left on device (28)' };
    let fits = false;
    // The receiver names the file it could not write; the sender had started another one already.
    rsync.answer(() => {
      const run = rsync.runs.at(-1)!;
      const big = run.full ? !run.args.includes("--exclude=/pub/big.bin") : run.paths.includes("pub/big.bin");
      return fits || !big ? SUCCEEDED : { ...noSpace, unwritable: "/r/1/pub/big.bin", lastFile: "pub/small-1.txt" };
    });
    replicator.changed({ kind: "created", key: "1/pub/big.bin" });
    replicator.changed({ kind: "created", key: "1/pub/small-1.txt" });
    await vi.advanceTimersByTimeAsync(100);
    expect(blobsOf(rsync.runs[0])).toEqual(["pub/big.bin", "pub/small-1.txt"]);
    // The others go again with the next batch, without a back-off; so do the batches after it.
    await vi.advanceTimersByTimeAsync(100);
    expect(blobsOf(rsync.runs[1])).toEqual(["pub/small-1.txt"]);
    replicator.changed({ kind: "created", key: "1/pub/small-2.txt" });
    await vi.advanceTimersByTimeAsync(100);
    expect(blobsOf(rsync.runs[2])).toEqual(["pub/small-2.txt"]);
    expect(replicator.status()[0]).toMatchObject({ backlog: 1, stuck: ["pub/big.bin"], lastError: expect.stringContaining("No space left") });
    // Alone, one second after it failed.
    await vi.advanceTimersByTimeAsync(1000);
    expect(rsync.runs.slice(3).map(blobsOf)).toEqual([["pub/big.bin"]]);
    // Room made on the peer, and a full pass asked for (SIGHUP): it is tried at once too.
    fits = true;
    replicator.fullPass("2");
    await vi.advanceTimersByTimeAsync(100);
    const full = rsync.runs.find((r) => r.full)!;
    expect(full.args).toEqual(expect.arrayContaining(["--exclude=/pub/big.bin", "--exclude=/meta/pub/big.bin"]));
    expect(blobsOf(rsync.runs.at(-1))).toEqual(["pub/big.bin"]);
    expect(replicator.status()[0]).toMatchObject({ backlog: 0 });
    expect(replicator.status()[0]!.stuck).toBeUndefined();
  });

  it("sets apart the files a run left out (exit 23), so that uploads into other folders keep getting their copies", async () => {
    await startOnePeer({ syncCopies: 2 });
    refuseLocked();
    const copies: Record<string, number | undefined> = {};
    for (const name of ["locked/a", "open/b"]) void replicator.changed({ kind: "created", key: `1/pub/${name}.txt` }).then((n) => (copies[name] = n));
    await vi.advanceTimersByTimeAsync(100);
    expect(blobsOf(rsync.runs[0])).toEqual(["pub/locked/a.txt", "pub/open/b.txt"]);
    // The one left out is set apart at once; the other goes again with the next batch, with no back-off.
    await vi.advanceTimersByTimeAsync(100);
    expect(blobsOf(rsync.runs[1])).toEqual(["pub/open/b.txt"]);
    expect(copies).toEqual({ "locked/a": 1, "open/b": 2 });
    void replicator.changed({ kind: "created", key: "1/pub/open/c.txt" }).then((n) => (copies["open/c"] = n));
    await vi.advanceTimersByTimeAsync(100);
    expect(copies["open/c"]).toBe(2);
    expect(replicator.status()[0]).toMatchObject({ backlog: 1, stuck: ["pub/locked/a.txt"] });
  });

  it("sets apart 100 files at most: beyond, a file that fails holds the others up again", async () => {
    await startOnePeer({ syncCopies: 2 });
    refuseLocked();
    for (let i = 0; i < 101; i++) void replicator.changed({ kind: "created", key: `1/pub/locked/${i}.txt` });
    await vi.advanceTimersByTimeAsync(100);
    expect(blobsOf(rsync.runs[0])).toHaveLength(101);
    // 100 set apart; the one beyond goes again at once, and fails its run whole: a back-off.
    expect(blobsOf(rsync.runs[1])).toEqual(["pub/locked/100.txt"]);
    expect(replicator.status()[0]).toMatchObject({ backlog: 101, lastError: expect.stringContaining("rsync exit 23") });
    expect(replicator.status()[0]!.stuck).toHaveLength(20);
    // An upload meanwhile goes with it, and fails with it.
    let copies: number | undefined;
    void replicator.changed({ kind: "created", key: "1/pub/open/b.txt" }).then((n) => (copies = n));
    await vi.advanceTimersByTimeAsync(2000);
    expect(copies).toBe(1);
    const carrying = rsync.runs.filter((run) => blobsOf(run)?.includes("pub/open/b.txt"));
    expect(carrying.length).toBeGreaterThan(0);
    for (const run of carrying) expect(blobsOf(run)).toEqual(["pub/locked/100.txt", "pub/open/b.txt"]);
    expect(replicator.status()[0]!.backlog).toBe(102);
  });

  it("keeps a file listed while it is tried alone, and a newer change of it goes the usual way", async () => {
    start({ targets: [{ id: "2", destination: "rsync://peer-2/nanocdn/1" }], syncCopies: 2 });
    await vi.advanceTimersByTimeAsync(10);
    rsync.runs.length = 0;
    const noSpace: RsyncResult = { ok: false, code: 11, message: "No space left on device (28)", unwritable: "pub/re.bin" };
    rsync.answer(() => noSpace);
    void replicator.changed({ kind: "created", key: "1/pub/re.bin" });
    await vi.advanceTimersByTimeAsync(100);
    const held = holdRuns();
    await vi.advanceTimersByTimeAsync(1000);
    expect(blobsOf(rsync.runs.at(-1))).toEqual(["pub/re.bin"]);
    expect(replicator.status()[0]).toMatchObject({ backlog: 1, stuck: ["pub/re.bin"], lastError: expect.stringContaining("No space left") });
    // Deleted and stored anew, small, while the old one is tried: the old one's failure is not the new one's.
    void replicator.changed({ kind: "deleted", key: "1/pub/re.bin" });
    const copies = replicator.changed({ kind: "created", key: "1/pub/re.bin" });
    // Its name goes once the try under way ends: no run carries it meanwhile.
    const before = rsync.runs.length;
    await vi.advanceTimersByTimeAsync(100);
    expect(rsync.runs.length).toBe(before);
    held.shift()!(noSpace);
    rsync.answer(() => SUCCEEDED);
    await vi.advanceTimersByTimeAsync(200);
    expect(await copies).toBe(2);
    expect(replicator.status()[0]!.stuck).toBeUndefined();
  });

  it("sets apart the file a full pass ended at, queued or not, and leaves it out of the next at once", async () => {
    await mkdir(join(folder, "own", "pub"), { recursive: true });
    for (const name of ["huge.bin", "we[ir]d*.bin"]) await writeFile(join(folder, "own", "pub", name), "x");
    await startFailing(SUCCEEDED);
    up.delete("2");
    replicator.changed({ kind: "created", key: "1/pub/huge.bin" });
    const noSpace = (name: string) => ({ ok: false, code: 11, message: "No space left on device (28)", unwritable: `pub/${name}` });
    rsync.answer(() => {
      const { args } = rsync.runs.at(-1)!;
      if (!args.includes("--exclude=/pub/huge.bin")) return noSpace("huge.bin");
      return args.includes("--exclude=/pub/we\\[ir]d\\*.bin") ? SUCCEEDED : noSpace("we[ir]d*.bin");
    });
    // Back: its catch-up pass ends at the queued file, then at one no batch carried.
    up.add("2");
    replicator.fullPass("2");
    // Whether the file named is one of this node's is asked of the disk, which
    // fake timers do not wait for: the clock moves on only as fast as the disk
    // answers, however slow it is, until a third pass has gone (or 30 s passed).
    const fullRuns = () => rsync.runs.filter((r) => r.full);
    for (let ms = 0; (fullRuns().length < 3 || replicator.status()[0]!.needsFullPass) && ms < 30_000; ms += 10) {
      await vi.advanceTimersByTimeAsync(10);
      await lstat(folder);
    }
    const full = fullRuns();
    expect(full).toHaveLength(3);
    expect(full[2]!.args).toEqual(expect.arrayContaining(["--exclude=/pub/huge.bin", "--exclude=/meta/pub/huge.bin", "--exclude=/pub/we\\[ir]d\\*.bin"]));
    expect(replicator.status()[0]).toMatchObject({ needsFullPass: false, backlog: 2, stuck: ["pub/huge.bin", "pub/we[ir]d*.bin"] });
  });

  it("keeps at most maxPending paths for a peer that is down, then catches it up with a full pass", async () => {
    start({ maxPending: 3 });
    await vi.advanceTimersByTimeAsync(10);
    rsync.runs.length = 0;
    up.delete("3");
    for (let i = 0; i < 3; i++) replicator.changed({ kind: "created", key: `1/pub/${i}.txt` });
    await vi.advanceTimersByTimeAsync(200);
    expect(replicator.status().find((s) => s.peer === "3")).toMatchObject({ backlog: 3, needsFullPass: false });
    replicator.changed({ kind: "created", key: "1/pub/3.txt" });
    await vi.advanceTimersByTimeAsync(200);
    // Peer 2 got every path; peer 3, down, was asked nothing, and past maxPending holds no list.
    expect(runsOf("2").flatMap((r) => blobsOf(r)!)).toEqual(["pub/0.txt", "pub/1.txt", "pub/2.txt", "pub/3.txt"]);
    expect(runsOf("3")).toHaveLength(0);
    expect(replicator.status().find((s) => s.peer === "3")).toMatchObject({ backlog: 0, needsFullPass: true });
    up.add("3");
    replicator.fullPass("3");
    await vi.advanceTimersByTimeAsync(10);
    expect(runsOf("3")).toEqual([expect.objectContaining({ full: true })]);
    expect(replicator.status().find((s) => s.peer === "3")).toMatchObject({ needsFullPass: false });
  });
  it("with syncCopies answers an upload once a peer's push succeeded, without waiting for the batch window", async () => {
    start({ syncCopies: 2, syncWaitMs: 5000, batchMs: 100 });
    await vi.advanceTimersByTimeAsync(10);
    rsync.runs.length = 0;
    let copies: number | undefined;
    void replicator.changed({ kind: "created", key: "1/pub/a.txt" }).then((n) => (copies = n));
    await vi.advanceTimersByTimeAsync(1);
    expect(rsync.runs.map((r) => r.peer).sort()).toEqual(["2", "3"]);
    expect(copies).toBe(2);
  });

  it("starts batches with the launcher it is given, and full passes without it", async () => {
    const launch: Launch = async () => ({ code: 0, stdout: "", stderr: "" });
    start({ launch });
    await vi.advanceTimersByTimeAsync(10);
    replicator.changed({ kind: "created", key: "1/pub/a.txt" });
    await vi.advanceTimersByTimeAsync(100);
    expect(runsOf("2").map((r) => [r.full, r.launch === launch])).toEqual([
      [true, false],
      [false, true],
    ]);
  });

  it("with syncCopies sends an upload's batch beside the ones under way at once while uploads come seldom, and gathers them while they come fast", async () => {
    await startOnePeer({ syncCopies: 2, syncWaitMs: 60_000, maxBatches: 4 });
    let held = holdRuns();
    const releaseAll = () => {
      for (const release of held.splice(0)) release(SUCCEEDED);
    };
    // One every 20 ms: each goes at once, beside the runs still under way.
    for (const [i, name] of ["a", "b", "c"].entries()) {
      upload(name);
      await vi.advanceTimersByTimeAsync(1);
      expect(rsync.runs).toHaveLength(i + 1);
      await vi.advanceTimersByTimeAsync(19);
    }
    expect(rsync.runs.map(blobsOf)).toEqual([["pub/a.txt"], ["pub/b.txt"], ["pub/c.txt"]]);
    releaseAll();
    // Then one every millisecond, for a while.
    rsync.answer(() => SUCCEEDED);
    for (let i = 0; i < 20; i++) {
      upload(`fast${i}`);
      await vi.advanceTimersByTimeAsync(1);
    }
    held = holdRuns();
    rsync.runs.length = 0;
    upload("v0");
    await vi.advanceTimersByTimeAsync(1);
    // Beside it, the next ones wait 10 ms for more to share one rsync run.
    for (const name of ["v1", "v2", "v3"]) {
      upload(name);
      await vi.advanceTimersByTimeAsync(1);
    }
    expect(rsync.runs.map(blobsOf)).toEqual([["pub/v0.txt"]]);
    await vi.advanceTimersByTimeAsync(8);
    expect(blobsOf(rsync.runs[1])).toEqual(["pub/v1.txt", "pub/v2.txt", "pub/v3.txt"]);
    // Sixteen waiting go at once.
    const sixteen = Array.from({ length: 16 }, (_, i) => `w${i}`);
    for (const name of sixteen) upload(name);
    await vi.advanceTimersByTimeAsync(1);
    expect(blobsOf(rsync.runs[2])).toEqual(sixteen.map((name) => `pub/${name}.txt`));
    releaseAll();
  });

  it("with syncCopies runs a few batches at most beside each other, never two with the same path, and one with deletes alone", async () => {
    // Asked at every run's start: how often the replicator looks for work.
    const isUp = vi.fn((id: string) => up.has(id));
    await startOnePeer({ syncCopies: 2, syncWaitMs: 60_000, maxBatches: 4, isUp });
    const held = holdRuns();
    const answered: string[] = [];
    // Uploads seldom enough to go at once, each while the batches before it still run.
    for (const name of ["a", "b", "c", "d", "e"]) {
      upload(name, answered);
      await vi.advanceTimersByTimeAsync(20);
    }
    expect(rsync.runs.map(blobsOf)).toEqual([["pub/a.txt"], ["pub/b.txt"], ["pub/c.txt"], ["pub/d.txt"]]);
    replicator.changed({ kind: "deleted", key: "1/pub/a.txt" });
    held[1]!(SUCCEEDED);
    await vi.advanceTimersByTimeAsync(1);
    expect(answered).toEqual(["b"]);
    // The delete of a waits for the batch that carries a's upload; and as a
    // delete prunes folders on the peer, where a batch beside it may be
    // putting a file, no batch starts beside those under way while it waits.
    expect(rsync.runs).toHaveLength(4);
    for (const release of [held[0]!, ...held.slice(2)]) release(SUCCEEDED);
    await vi.advanceTimersByTimeAsync(1);
    expect(answered.sort()).toEqual(["a", "b", "c", "d"]);
    expect(rsync.runs.slice(4).map(blobsOf)).toEqual([["pub/e.txt", "pub/a.txt"]]);
    // Nothing runs beside the batch with the delete either, and nothing
    // looks again and again meanwhile: its end sends what waits.
    isUp.mockClear();
    upload("f", answered);
    await vi.advanceTimersByTimeAsync(50);
    expect(rsync.runs).toHaveLength(5);
    expect(isUp.mock.calls.length).toBeLessThan(5);
    held[4]!(SUCCEEDED);
    await vi.advanceTimersByTimeAsync(1);
    expect(answered).toContain("e");
    expect(rsync.runs.slice(5).map(blobsOf)).toEqual([["pub/f.txt"]]);
    held[5]!(SUCCEEDED);
    await vi.advanceTimersByTimeAsync(1);
    expect(answered).toContain("f");
  });

  it("with one batch at a time, sends the uploads that came during a run together once it ends; one at a time on two cores or fewer", async () => {
    expect([1, 2, 3, 4, 16].map((cores) => defaultMaxBatches(cores))).toEqual([1, 1, 4, 4, 4]);
    await startOnePeer({ syncCopies: 2, syncWaitMs: 60_000, maxBatches: 1 });
    const held = holdRuns();
    const answered: string[] = [];
    upload("a", answered);
    await vi.advanceTimersByTimeAsync(1);
    // Seldom or not, those behind it wait for the run under way.
    for (const name of ["b", "c", "d"]) {
      upload(name, answered);
      await vi.advanceTimersByTimeAsync(30);
    }
    expect(rsync.runs.map(blobsOf)).toEqual([["pub/a.txt"]]);
    held[0]!(SUCCEEDED);
    await vi.advanceTimersByTimeAsync(1);
    expect(answered).toEqual(["a"]);
    expect(rsync.runs.map(blobsOf)).toEqual([["pub/a.txt"], ["pub/b.txt", "pub/c.txt", "pub/d.txt"]]);
    held[1]!(SUCCEEDED);
    await vi.advanceTimersByTimeAsync(1);
    expect(answered).toEqual(["a", "b", "c", "d"]);
  });

  it("counts a path as carried by a full pass only when it last changed before the pass began, whatever the clock does", async () => {
    start({ syncCopies: 2, syncWaitMs: 60_000, targets: [{ id: "2", destination: "rsync://peer-2/nanocdn/1" }] });
    await vi.advanceTimersByTimeAsync(10);
    // Queued while the peer is down: answered with one copy.
    up.delete("2");
    expect(await replicator.changed({ kind: "created", key: "1/pub/x.txt" })).toBe(1);
    await vi.advanceTimersByTimeAsync(5);
    up.add("2");
    rsync.runs.length = 0;
    const held = holdRuns();
    replicator.fullPass("2");
    await vi.advanceTimersByTimeAsync(1);
    expect(rsync.runs.map((r) => r.full)).toEqual([true]);
    // Changed again once the pass has listed the folder: the pass may not carry this change,
    // even when the clock has been set back meanwhile (by NTP, say).
    vi.setSystemTime(Date.now() - 60_000);
    let copies: number | undefined;
    void replicator.changed({ kind: "deleted", key: "1/pub/x.txt" });
    void replicator.changed({ kind: "created", key: "1/pub/x.txt" }).then((n) => (copies = n));
    held[0]!(SUCCEEDED);
    await vi.advanceTimersByTimeAsync(1);
    expect(copies).toBeUndefined();
    expect(rsync.runs.slice(1).map(blobsOf)).toEqual([["pub/x.txt"]]);
    held[1]!(SUCCEEDED);
    await vi.advanceTimersByTimeAsync(1);
    expect(copies).toBe(2);
    expect(replicator.status()[0]).toMatchObject({ backlog: 0 });
  });

  it("with syncCopies answers with the copies there are when the pushes fail or no peer is up", async () => {
    start({ syncCopies: 3, syncWaitMs: 5000 });
    await vi.advanceTimersByTimeAsync(10);
    rsync.answer(() => ({ ok: false, code: 10, message: "connection refused" }));
    let copies: number | undefined;
    void replicator.changed({ kind: "created", key: "1/pub/a.txt" }).then((n) => (copies = n));
    await vi.advanceTimersByTimeAsync(1);
    expect(copies).toBe(1);
    up.clear();
    expect(await replicator.changed({ kind: "created", key: "1/pub/b.txt" })).toBe(1);
    expect(replicator.shortOfCopies).toBe(2);
  });

  it("with syncCopies never makes an upload wait for the retry of a peer whose pushes fail", async () => {
    up = new Set(["2"]);
    start({ syncCopies: 2, syncWaitMs: 5000 });
    await vi.advanceTimersByTimeAsync(10);
    rsync.answer(() => ({ ok: false, code: 11, message: 'write failed on "pub/huge.bin": No space left on device (28)' }));
    const answered: Record<string, number> = {};
    void replicator.changed({ kind: "created", key: "1/pub/huge.bin" }).then((n) => (answered.huge = n));
    await vi.advanceTimersByTimeAsync(1);
    expect(answered.huge).toBe(1);
    // Peer 2 is retried after 200 ms: the next upload is answered now, and goes with that retry.
    void replicator.changed({ kind: "created", key: "1/pub/tiny.txt" }).then((n) => (answered.tiny = n));
    await vi.advanceTimersByTimeAsync(1);
    expect(answered.tiny).toBe(1);
    rsync.answer(() => SUCCEEDED);
    await vi.advanceTimersByTimeAsync(200);
    expect(blobsOf(runsOf("2").at(-1))?.sort()).toEqual(["pub/huge.bin", "pub/tiny.txt"]);
    expect(replicator.status()[0]).toMatchObject({ backlog: 0 });
    // Working again: uploads wait for their copy once more.
    void replicator.changed({ kind: "created", key: "1/pub/after.txt" }).then((n) => (answered.after = n));
    await vi.advanceTimersByTimeAsync(1);
    expect(answered.after).toBe(2);
  });

  it("at a graceful stop pushes what is queued to the peers that are up at once, and waits no longer than it is told", async () => {
    const warnings: string[] = [];
    start({ batchMs: 3_600_000, log: { ...quiet, warn: (_fields, message) => warnings.push(message ?? "") } });
    await vi.advanceTimersByTimeAsync(10);
    rsync.runs.length = 0;
    up.delete("3");
    replicator.changed({ kind: "deleted", key: "1/pub/a.txt" });
    let drained = false;
    void replicator.drain(1000).then(() => (drained = true));
    await vi.advanceTimersByTimeAsync(50);
    // Peer 3 is down: its change waits for this node's next start.
    expect(rsync.runs.map((r) => [r.peer, blobsOf(r)])).toEqual([["2", ["pub/a.txt"]]]);
    expect(drained).toBe(true);
    expect(replicator.status().map((s) => [s.peer, s.backlog])).toEqual([
      ["2", 0],
      ["3", 1],
    ]);

    const held = holdRuns();
    replicator.changed({ kind: "created", key: "1/pub/b.txt" });
    drained = false;
    void replicator.drain(1000).then(() => (drained = true));
    await vi.advanceTimersByTimeAsync(900);
    expect(held).toHaveLength(1);
    expect(drained).toBe(false);
    await vi.advanceTimersByTimeAsync(150);
    expect(drained).toBe(true);
    expect(warnings).toEqual(["stopping before every queued change reached the peers; the next start's full pass carries them"]);
  });

  it("at a graceful stop tries a peer whose last push failed once more at once, not after its back-off", async () => {
    start({ targets: [{ id: "2", destination: "rsync://peer-2/nanocdn/1" }] });
    await vi.advanceTimersByTimeAsync(10);
    rsync.runs.length = 0;
    rsync.answer(() => ({ ok: false, code: 10, message: "connection refused" }));
    replicator.changed({ kind: "deleted", key: "1/pub/a.txt" });
    for (let i = 0; i < 100 && rsync.runs.length < 4; i++) await vi.advanceTimersByTimeAsync(50);
    // Four failures: the next try is 1.6 s away, and the changes since wait for it.
    replicator.changed({ kind: "deleted", key: "1/pub/b.txt" });
    await vi.advanceTimersByTimeAsync(100);
    expect(rsync.runs).toHaveLength(4);
    rsync.answer(() => SUCCEEDED);
    let drained = false;
    void replicator.drain(1000).then(() => (drained = true));
    await vi.advanceTimersByTimeAsync(50);
    expect(rsync.runs).toHaveLength(5);
    expect(blobsOf(rsync.runs.at(-1))?.sort()).toEqual(["pub/a.txt", "pub/b.txt"]);
    expect(drained).toBe(true);
    expect(replicator.status()[0]).toMatchObject({ backlog: 0 });
  });

  it("at a graceful stop pushes what is queued to a peer whose full pass keeps failing, and leaves the pass", async () => {
    start({ targets: [{ id: "2", destination: "rsync://peer-2/nanocdn/1" }] });
    // Every full pass fails (a folder rsync cannot read, naming no file to set apart).
    rsync.answer((_, args) => (args.includes("--delete") ? { ok: false, code: 23, message: "some files/attrs were not transferred" } : SUCCEEDED));
    await vi.advanceTimersByTimeAsync(10);
    // The pass is due again when the stop comes, with a delete just answered queued.
    replicator.fullPass("2");
    replicator.changed({ kind: "deleted", key: "1/pub/gone.txt" });
    rsync.runs.length = 0;
    let drained = false;
    void replicator.drain(1000).then(() => (drained = true));
    await vi.advanceTimersByTimeAsync(50);
    expect(rsync.runs.map((run) => [run.full, blobsOf(run)?.[0]])).toEqual([[false, "pub/gone.txt"]]);
    expect(drained).toBe(true);
  });

  it("ends a push to a peer that is marked down, and starts the catch-up pass at once when it is back", async () => {
    start({ targets: [{ id: "2", destination: "rsync://peer-2/nanocdn/1" }] });
    await vi.advanceTimersByTimeAsync(10);
    rsync.runs.length = 0;
    // A dead connection: the run ends only when it is told to.
    rsync.answer(({ signal }) => new Promise((resolve) => signal!.addEventListener("abort", () => resolve({ ok: false, code: null, message: "ended" }))));
    replicator.changed({ kind: "created", key: "1/pub/a.txt" });
    await vi.advanceTimersByTimeAsync(100);
    expect(rsync.runs).toHaveLength(1);
    up.delete("2");
    replicator.halt("2");
    await vi.advanceTimersByTimeAsync(5000);
    expect(rsync.runs).toHaveLength(1);
    expect(replicator.status()[0]).toMatchObject({ backlog: 1, lastError: "ended" });
    rsync.answer(() => SUCCEEDED);
    up.add("2");
    replicator.fullPass("2");
    await vi.advanceTimersByTimeAsync(10);
    expect(rsync.runs.at(-1)).toMatchObject({ full: true });
    expect(replicator.status()[0]).toMatchObject({ backlog: 0, needsFullPass: false });
  });

  it("ends the runs under way when the node stops, and keeps nothing per run on the node's stop signal", async () => {
    const stopping = new AbortController();
    start({ rsync: { connectTimeoutS: 1, ioTimeoutS: 10, signal: stopping.signal } });
    await vi.advanceTimersByTimeAsync(10);
    for (let i = 0; i < 20; i++) {
      replicator.changed({ kind: "created", key: `1/pub/${i}.txt` });
      await vi.advanceTimersByTimeAsync(200);
    }
    expect(rsync.runs.length).toBeGreaterThan(20);
    // A signal made with AbortSignal.any stays listed on each one it combines, for as long as the node runs (Node.js 20).
    const node = stopping.signal as unknown as Record<symbol, Set<unknown> | undefined>;
    const kept = Object.getOwnPropertySymbols(node).filter((symbol) => symbol.description === "kDependantSignals");
    expect(kept.map((symbol) => node[symbol]!.size).filter((size) => size > 0)).toEqual([]);

    // The runs of the next batch, one per peer, held under way.
    const held: { signal?: AbortSignal; end: (result: RsyncResult) => void }[] = [];
    rsync.answer((options) => new Promise((end) => held.push({ signal: options.signal, end })));
    replicator.changed({ kind: "created", key: "1/pub/last.txt" });
    await vi.advanceTimersByTimeAsync(200);
    expect(held.map(({ signal }) => signal?.aborted)).toEqual([false, false]);
    stopping.abort();
    expect(held.map(({ signal }) => signal?.aborted)).toEqual([true, true]);
    for (const { end } of held) end(SUCCEEDED);
  });
});
