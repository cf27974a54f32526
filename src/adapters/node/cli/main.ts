import { checkConfigCommand } from "./check-config.ts";
import { type Command, UsageError, commandHelp, overview, parseCommandArgs } from "./command.ts";
import { suggest } from "./suggest.ts";
import { ConfigError } from "./config.ts";
import { clusterCommand } from "./local-cluster.ts";
import { WrongUserError, refuseWrongUser } from "./run-as.ts";
import { serveCommand } from "./serve.ts";
import { signCommand } from "./sign-command.ts";
import { statusCommand } from "./status-command.ts";
import { userAddCommand, userListCommand, userRemoveCommand } from "./user.ts";
import { verifyCommand } from "./verify.ts";
import { packageVersion } from "../process/version.ts";

/** Every command: adding one is adding its entry here. */
const COMMANDS: Command[] = [
  serveCommand,
  checkConfigCommand,
  verifyCommand,
  signCommand,
  statusCommand,
  clusterCommand,
  userAddCommand,
  userRemoveCommand,
  userListCommand,
];

/** The command named by the first words of argv ("user add" before "user"), and the rest. */
function findCommand(argv: string[]): { command?: Command; args: string[] } {
  for (const words of [2, 1]) {
    const command = COMMANDS.find((c) => c.name === argv.slice(0, words).join(" "));
    if (command) return { command, args: argv.slice(words) };
  }
  return { args: argv };
}

/** For a group's name alone ("user"), the overview of its commands. */
const group = (name: string) => COMMANDS.filter((c) => c.name.startsWith(`${name} `));

async function main(argv: string[]): Promise<number> {
  const [first, second] = argv;
  if (first === "-v" || first === "--version" || first === "version") {
    console.log(packageVersion());
    return 0;
  }
  if (first === undefined || first === "-h" || first === "--help" || first === "help") {
    const { command } = findCommand(argv.slice(1));
    if (second !== undefined && !command && group(second).length === 0) throw new UsageError(`unknown command '${second}'`);
    process.stdout.write(command ? commandHelp(command) : group(second ?? "").length > 0 ? overview(group(second!)) : overview(COMMANDS));
    return first === undefined ? 2 : 0;
  }
  const { command, args } = findCommand(argv);
  if (!command) {
    const members = group(first);
    if (members.length > 0) {
      if (second === "-h" || second === "--help") {
        process.stdout.write(overview(members));
        return 0;
      }
      const close =
        second === undefined
          ? undefined
          : suggest(
              second,
              members.map((c) => c.name.split(" ")[1]!),
            );
      const wrong =
        second === undefined ? `'${first}' needs a command` : `unknown command '${first} ${second}'${close ? `; did you mean '${first} ${close}'?` : ""}`;
      process.stderr.write(`nanocdn: ${wrong}\n\n${overview(members)}`);
      return 2;
    }
    const names = [...new Set(COMMANDS.map((c) => c.name.split(" ")[0]!))];
    const close = first.startsWith("-") ? undefined : suggest(first, names);
    const what = first.startsWith("-") ? `unknown option '${first}'` : `unknown command '${first}'`;
    process.stderr.write(`nanocdn: ${what}${close ? `; did you mean '${close}'?` : ""}\n\n${overview(COMMANDS)}`);
    return 2;
  }
  const input = parseCommandArgs(command, args);
  if (input === "help") {
    process.stdout.write(commandHelp(command));
    return 0;
  }
  await refuseWrongUser(command, input, argv);
  return command.run(input);
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exit(code);
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.stderr.write(`nanocdn: ${error.message}\n\n${error.command ? commandHelp(error.command, true) : overview(COMMANDS)}`);
      process.exit(2);
    }
    if (error instanceof ConfigError || error instanceof WrongUserError) {
      process.stderr.write(`nanocdn: ${error.message}\n`);
      // A port another process holds may be free on the next try: not the status a service manager gives up on.
      process.exit(error instanceof ConfigError && error.mayPass ? 1 : 2);
    }
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`nanocdn: ${message}\n`);
    process.exit(1);
  },
);
