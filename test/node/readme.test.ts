import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NodeProcess, startNodeProcess } from "../helpers/node-process.ts";

interface Step {
  command: string;
  expected: string;
}

/** The `$ command` lines of a console block of the README, each with the output it shows. */
export async function consoleBlock(afterHeading: string): Promise<Step[]> {
  const readme = await readFile(new URL("../../README.md", import.meta.url), "utf8");
  const section = readme.slice(readme.indexOf(afterHeading));
  const block = /```console\n([\s\S]*?)```/.exec(section)![1]!;
  const steps: Step[] = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("$ ")) steps.push({ command: line.slice(2), expected: "" });
    else if (line !== "") steps.at(-1)!.expected += `${line}\n`;
  }
  return steps;
}

/** Runs the steps one after another in one bash, in `cwd`, and returns what each printed. */
export function runSteps(steps: Step[], cwd: string, rewrite: (command: string) => string): string[] {
  const marker = "@@nanocdn-step-end@@";
  const script = steps.map((s) => `${rewrite(s.command)}\nprintf '\\n${marker}\\n'`).join("\n");
  const output = execFileSync("bash", ["-e", "-c", script], { cwd, encoding: "utf8" });
  return output.split(`\n${marker}\n`).slice(0, steps.length);
}

describe("README walk-through", () => {
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
    steps.forEach((step, i) => {
      expect(outputs[i]!.replace(/\n$/, ""), step.command).toBe(step.expected.replace(/\n$/, ""));
    });
  });
});
