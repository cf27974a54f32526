import { dirname } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NodeProcess, startNodeProcess } from "../helpers/node-process.ts";
import { consoleBlock, expectedOutputs, runSteps } from "../helpers/readme.ts";

describe("README walk-through on a Node node", () => {
  let node: NodeProcess;
  beforeAll(async () => {
    node = await startNodeProcess({ noHtpasswd: true, config: { data: "data" } });
  });
  afterAll(async () => {
    await node?.stop();
  });

  it("gives exactly what the README shows", async () => {
    const steps = await consoleBlock("## Walk-through");
    expect(steps.length).toBeGreaterThan(5);
    const outputs = runSteps(steps, dirname(node.configFile), (c) => c.replaceAll("127.0.0.1:8080", `127.0.0.1:${node.port}`));
    expect(outputs).toEqual(expectedOutputs(steps));
  });
});
