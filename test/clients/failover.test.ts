import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as clientModule from "../../clients/typescript/src/index.ts";
import { NanoCdnClient, NanoCdnError } from "../../clients/typescript/src/index.ts";
import { PASSWORD, USER } from "../helpers/credentials.ts";
import { caseName, type FailoverCase, failover, failoverMarkdown, type Outcome } from "../helpers/failover-table.ts";
import { type FakeNode, startFakeNode } from "../helpers/fake-node.ts";
import { type NodeProcess, startNodeProcess } from "../helpers/node-process.ts";
import { freePort } from "../helpers/ports.ts";

// Every case of clients/failover.json, against the TypeScript client: a node that behaves
// so first, a real node second. The Django suite runs the same cases (tests/test_failover_table.py).

const ROOT = resolve(import.meta.dirname, "../..");
const credentials = { user: USER, password: PASSWORD };
let real: NodeProcess;
let counter = 0;

beforeAll(async () => {
  real = await startNodeProcess({ config: { node: "6" } });
}, 60_000);
afterAll(async () => {
  await real?.stop();
});

async function firstNode(c: FailoverCase): Promise<FakeNode | { url: string; close(): Promise<void> }> {
  if (c.network === "refused") return { url: `http://127.0.0.1:${await freePort()}`, close: async () => {} };
  return startFakeNode(c.network ? { network: c.network } : { status: c.status!, code: c.code });
}

/**
 * A fresh client (nothing learnt about the nodes yet). Quick to give up on a hung first node, but
 * not so quick that the real node, whose `/check/` fsyncs a file, misses a time-out that applies
 * to it too on a loaded machine.
 */
function client(first: string, c?: FailoverCase): NanoCdnClient {
  const quick = c?.network === "hung" ? { timeoutMs: 3_000, probeTimeoutMs: 2_000 } : {};
  return new NanoCdnClient({ nodes: [first, real.url], credentials, startAt: 0, ...quick });
}

function expectError(error: unknown, outcome: Outcome, first: string): void {
  const expected = (clientModule as unknown as Record<string, typeof NanoCdnError>)[failover.outcomes[outcome].typescript]!;
  expect(error).toBeInstanceOf(expected);
  // "error" is the plain class: no more specific one applies.
  if (outcome === "error") expect((error as object).constructor).toBe(NanoCdnError);
  // A final answer ends the request there: the second node was never asked.
  expect((error as NanoCdnError).attempts.map((a) => a.node)).toEqual([first]);
}

describe("the failover table (clients/failover.json), TypeScript client", () => {
  for (const c of failover.cases) {
    it(`${caseName(c)}: reads and deletes ${c.read}, uploads ${c.upload}`, async () => {
      const path = `failover/${++counter}-${Date.now()}.txt`;
      const { name } = await client(real.url).put(path, "on the real node", { namespace: "pub" });
      const first = await firstNode(c);
      try {
        const read = await client(first.url, c)
          .get(name)
          .catch((e: unknown) => e);
        if (c.read === "next") {
          expect(read).toMatchObject({ node: real.url });
          expect(await (read as clientModule.NanoCdnFile).text()).toBe("on the real node");
        } else expectError(read, c.read, first.url);

        const deleted = await client(first.url, c)
          .delete(name)
          .catch((e: unknown) => e);
        if (c.read === "next") expect(deleted).toBe(true);
        else if (c.read === "not_found") expect(deleted).toBe(false);
        else expectError(deleted, c.read, first.url);

        const upload = await client(first.url, c)
          .put(`${path}.up`, "uploaded", { namespace: "pub" })
          .catch((e: unknown) => e);
        if (c.upload === "next") {
          expect(upload).toMatchObject({ owner: "6", node: real.url });
          expect((upload as clientModule.PutResult).attempts.map((a) => a.node)).toEqual([first.url, real.url]);
        } else {
          expectError(upload, c.upload, first.url);
          expect(await client(real.url).exists(`/6/pub/${path}.up`)).toBe(false);
        }
      } finally {
        await first.close();
      }
    });
  }

  it("is the table both READMEs show", async () => {
    const table = failoverMarkdown();
    for (const readme of ["README.md", "clients/django/README.md"]) {
      expect(await readFile(resolve(ROOT, readme), "utf8"), readme).toContain(table);
    }
  });
});
