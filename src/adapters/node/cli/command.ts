import { parseArgs } from "node:util";
import { CONFIG_KEYS } from "./config.ts";
import { configOptions } from "./config-help.ts";
import { suggest } from "./suggest.ts";

/** A mistake in how the command was called: the usage is printed with it. */
export class UsageError extends Error {
  constructor(
    message: string,
    /** The command whose usage fits, when it is known. */
    readonly command?: Command,
  ) {
    super(message);
    this.name = "UsageError";
  }
}

export interface OptionSpec {
  type: "string" | "boolean";
  short?: string;
  /** What the value is, in the usage: FILE, N, HOST. */
  value?: string;
  default?: string;
  meaning: string;
}

export interface CommandInput {
  /** The command's own options, by name, with their defaults filled in. */
  options: Record<string, string | boolean | undefined>;
  positionals: string[];
  /** Configuration keys given as flags (commands with `configFlags`), by key. */
  configFlags: Record<string, string>;
}

/**
 * One entry of the command table: everything `--help` shows and what runs.
 * A command's `run` resolves to the exit code; a command that keeps running
 * (serve) resolves once it has started.
 */
export interface Command {
  /** One word, or a group and a word ("user add"). */
  name: string;
  summary: string;
  /** The positional arguments in the usage line, e.g. "NAME". */
  args?: string;
  /** How many positional arguments it takes: [least, most]. */
  positionals?: [number, number];
  options: Record<string, OptionSpec>;
  /** Every configuration key is an option too (`--KEY VALUE`), listed from the config schema. */
  configFlags?: boolean;
  /** More text under the options in `--help`. */
  details?: string;
  /**
   * A command that writes where the node's user keeps its files (or judges
   * them for the node) runs as that user: as root, it refuses when another
   * user owns `path` (run-as.ts). `asRoot` says what root would get wrong.
   */
  runAsOwnerOf?: { path(input: CommandInput): Promise<string | undefined>; asRoot: string };
  run(input: CommandInput): Promise<number>;
}

const HELP: OptionSpec = { type: "boolean", short: "h", meaning: "show this help" };

export function parseCommandArgs(command: Command, args: string[]): CommandInput | "help" {
  const specs: Record<string, OptionSpec> = { ...command.options, help: HELP };
  const configKeys = new Map<string, string>();
  if (command.configFlags) {
    for (const key of CONFIG_KEYS) {
      configKeys.set(key.replaceAll("_", "-"), key);
      configKeys.set(key, key);
    }
  }
  const parseOptions: Record<string, { type: "string" | "boolean"; short?: string }> = {};
  for (const [name, spec] of Object.entries(specs)) parseOptions[name] = { type: spec.type, ...(spec.short ? { short: spec.short } : {}) };
  for (const name of configKeys.keys()) parseOptions[name] ??= { type: "string" };
  const { tokens } = parseArgs({ args, options: parseOptions, strict: false, allowPositionals: true, tokens: true });

  const options: CommandInput["options"] = {};
  const configFlags: Record<string, string> = {};
  const positionals: string[] = [];
  for (const token of tokens) {
    if (token.kind === "positional") positionals.push(token.value);
    if (token.kind !== "option") continue;
    const known = parseOptions[token.name];
    if (!known) {
      const close = suggest(token.name, Object.keys(parseOptions));
      throw new UsageError(`unknown option '${token.rawName}'${close ? `; did you mean '--${close}'?` : ""}`, command);
    }
    if (token.name === "help") return "help";
    if (known.type === "string" && token.value === undefined) throw new UsageError(`${token.rawName} needs a value`, command);
    if (known.type === "boolean" && token.value !== undefined) throw new UsageError(`${token.rawName} takes no value`, command);
    if (token.name in specs) options[token.name] = token.value ?? true;
    else configFlags[configKeys.get(token.name)!] = token.value!;
  }
  const [least, most] = command.positionals ?? [0, 0];
  if (positionals.length < least) throw new UsageError(`missing ${command.args ?? "arguments"}`, command);
  if (positionals.length > most) throw new UsageError(`unexpected argument '${positionals[most]}'`, command);
  for (const [name, spec] of Object.entries(command.options)) options[name] ??= spec.default;
  return { options, positionals, configFlags };
}

function optionLines(specs: Record<string, OptionSpec>): string[] {
  const heads = Object.entries(specs).map(([name, spec]) => {
    const short = spec.short ? `-${spec.short}, ` : "    ";
    return `  ${short}--${name}${spec.type === "string" ? ` ${spec.value ?? "VALUE"}` : ""}`;
  });
  const width = Math.min(34, Math.max(...heads.map((h) => h.length)) + 2);
  return Object.values(specs).map((spec, i) => {
    const head = heads[i]!;
    const text = `${spec.meaning}${spec.default !== undefined ? ` (default: ${spec.default})` : ""}`;
    return head.length + 2 > width ? `${head}\n${" ".repeat(width)}${text}` : `${head.padEnd(width)}${text}`;
  });
}

/** The `--help` of one command; `brief` (after a usage error) leaves out the configuration keys. */
export function commandHelp(command: Command, brief = false): string {
  const lines = [`Usage: nanocdn ${command.name}${command.args ? ` ${command.args}` : ""} [options]`, "", command.summary, "", "Options:"];
  const anyKey: OptionSpec = { type: "string", meaning: `any configuration key; \`nanocdn ${command.name} --help\` lists them` };
  lines.push(...optionLines({ ...command.options, help: HELP, ...(command.configFlags && brief ? { KEY: anyKey } : {}) }));
  if (command.configFlags && !brief) {
    lines.push(
      "",
      "Configuration (in the TOML file, as NANOCDN_<KEY> in the environment, or as --<key> with",
      "dashes or underscores; flags win over the environment, which wins over the file):",
      ...optionLines(configOptions()),
    );
  }
  if (command.details) lines.push("", command.details);
  return `${lines.join("\n")}\n`;
}

/** The overview: every command with its summary. */
export function overview(commands: readonly Command[]): string {
  const width = Math.max(...commands.map((c) => c.name.length)) + 4;
  return [
    "Usage: nanocdn <command> [options]",
    "",
    "Commands:",
    ...commands.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    "",
    "Options:",
    "  -h, --help     show this help; `nanocdn <command> --help` shows a command's options",
    "  -v, --version  print the version",
    "",
  ].join("\n");
}
