import { join, relative } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { basic } from "../helpers/credentials.ts";
import { type NodeProcess, startNodeProcess } from "../helpers/node-process.ts";
import { traceSyscalls } from "../helpers/strace.ts";

const auth = { Authorization: basic() };

/**
 * What a trace says, in order: each fsync and unlink that succeeded, when it
 * ended (the path of its descriptor or its argument, relative to the data
 * folder), and each HTTP answer the process began to write, by its status line.
 */
function events(trace: string, data: string): string[] {
  const lines = trace.split("\n");
  const seen: { at: number; what: string }[] = [];
  lines.forEach((line, index) => {
    const answer = /^\d+\s+writev?\(.*"HTTP\/1\.1 (\d{3})/.exec(line);
    if (answer) seen.push({ at: index, what: `answer ${answer[1]}` });
    const call = /^(\d+)\s+(?:(fsync)\(\d+<([^>]+)>|(unlink)\("([^"]+)")/.exec(line);
    if (!call) return;
    const [, thread, fsync, descriptor, unlink, argument] = call;
    const name = (fsync ?? unlink)!;
    // Interleaved with other threads' calls, the call's end is a line of its own.
    const end = / = 0$/.test(line)
      ? index
      : lines.findIndex((later, at) => at > index && later.startsWith(`${thread} `) && new RegExp(`${name} resumed>.* = 0$`).test(later));
    if (end >= 0) seen.push({ at: end, what: `${name} ${relative(data, (descriptor ?? argument)!)}` });
  });
  return seen.sort((a, b) => a.at - b.at).map((event) => event.what);
}

describe("fsync = true (the default)", () => {
  let node: NodeProcess | undefined;
  afterEach(async () => {
    await node?.stop();
    node = undefined;
  });

  it("makes an upload durable before its 201, and a delete before its 204", async () => {
    node = await startNodeProcess({ config: { workers: 1 } });
    const { url, data } = node;
    expect((await fetch(`${url}/upload/pub/old/gone.txt`, { method: "PUT", headers: auth, body: "to delete" })).status).toBe(201);
    const tracer = await traceSyscalls(node.pid, join(data, "..", "calls.log"), ["fsync", "unlink", "write", "writev"]);
    let trace = "";
    try {
      const put = await fetch(`${url}/upload/pub/new/kept.txt`, { method: "PUT", headers: auth, body: "to keep" });
      expect(put.status).toBe(201);
      expect((await fetch(`${url}/1/pub/old/gone.txt`, { method: "DELETE", headers: auth })).status).toBe(204);
    } finally {
      trace = await tracer.stop();
    }
    const seen = events(trace, data);
    const created = seen.indexOf("answer 201");
    const deleted = seen.indexOf("answer 204");
    expect(created, trace).toBeGreaterThan(0);
    expect(deleted, trace).toBeGreaterThan(created);
    const beforeCreated = seen.slice(0, created);
    // The file and its metadata (temp files, linked into place after), then the folders that name them.
    expect(beforeCreated.filter((event) => /^fsync tmp\/[\w-]+\.part(\.meta)?$/.test(event))).toHaveLength(2);
    for (const folder of ["files/1/pub/new", "files/1/meta/pub/new", "files/1/pub", "files/1/meta/pub"])
      expect(beforeCreated, folder).toContain(`fsync ${folder}`);
    // The file, then its metadata, both before the fsync that commits their removal.
    const removal = seen.slice(created + 1, deleted);
    const synced = removal.indexOf("fsync files/1/pub/old");
    expect(synced, trace).toBeGreaterThan(0);
    expect(removal.slice(0, synced), trace).toEqual(expect.arrayContaining(["unlink files/1/pub/old/gone.txt", "unlink files/1/meta/pub/old/gone.txt"]));
    expect(removal.indexOf("unlink files/1/pub/old/gone.txt")).toBeLessThan(removal.indexOf("unlink files/1/meta/pub/old/gone.txt"));
  });

  it("makes an upload's expiry durable before the file it is for", async () => {
    node = await startNodeProcess({ config: { workers: 1 } });
    const { url, data } = node;
    const tracer = await traceSyscalls(node.pid, join(data, "..", "expiry-calls.log"), ["fsync", "write", "writev"]);
    let trace = "";
    try {
      const put = await fetch(`${url}/upload/pub/expiring.txt`, { method: "PUT", headers: { ...auth, "X-Delete-After": "3600" }, body: "gone in an hour" });
      expect(put.status).toBe(201);
    } finally {
      trace = await tracer.stop();
    }
    const seen = events(trace, data);
    // The entry's name in the expiry index is on disk before the file's bytes are synced, so a power cut cannot keep the file without it.
    const entry = seen.findIndex((event) => /^fsync state\/expiry\/\d+$/.test(event));
    const file = seen.findIndex((event) => /^fsync tmp\/[\w-]+\.part$/.test(event));
    expect(entry, trace).toBeGreaterThanOrEqual(0);
    expect(file, trace).toBeGreaterThan(entry);
    expect(seen.indexOf("answer 201"), trace).toBeGreaterThan(file);
  });
});
