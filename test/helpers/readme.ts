import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";

export interface Step {
  command: string;
  expected: string;
}

/** The `$ command` lines of the first console block after a README heading, each with the output it shows. */
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

/**
 * Runs the steps one after another in one bash, in `cwd`, and returns what
 * each printed, without a trailing newline (the README cannot show one).
 */
export function runSteps(steps: Step[], cwd: string, rewrite: (command: string) => string = (c) => c): string[] {
  const marker = "@@nanocdn-step-end@@";
  const script = steps.map((s) => `${rewrite(s.command)}\nprintf '\\n${marker}\\n'`).join("\n");
  const output = execFileSync("bash", ["-e", "-c", script], { cwd, encoding: "utf8" });
  return output
    .split(`\n${marker}\n`)
    .slice(0, steps.length)
    .map((o) => o.replace(/\n$/, ""));
}

export function expectedOutputs(steps: Step[]): string[] {
  return steps.map((s) => s.expected.replace(/\n$/, ""));
}
