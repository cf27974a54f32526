import { stat } from "node:fs/promises";
import { accountName } from "../users/account-name.ts";
import type { Command, CommandInput } from "./command.ts";
import { ConfigError } from "./config.ts";

/** A command run as root on files another user (the node's) owns. */
export class WrongUserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WrongUserError";
  }
}

/** An argument as a shell takes it back. */
const quoted = (arg: string) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`);

/**
 * Under sudo, a command that writes where the node's user keeps its files
 * makes them root's (a folder of the store, a new users file of mode 600)
 * and the node, not root, then fails on them; check-config reads as root
 * what the node could not. So as root, such a command (one with
 * `runAsOwnerOf`) refuses when another user owns its path, and says how to
 * run it as that user. `argv` is the command line, for that advice.
 */
export async function refuseWrongUser(command: Command, input: CommandInput, argv: string[]): Promise<void> {
  if (process.getuid?.() !== 0 || !command.runAsOwnerOf) return;
  let path: string | undefined;
  try {
    path = await command.runAsOwnerOf.path(input);
  } catch (error) {
    // The command itself says what is wrong with the configuration.
    if (error instanceof ConfigError) return;
    throw error;
  }
  if (path === undefined) return;
  const owner = await stat(path).then(
    (stats) => stats.uid,
    () => 0,
  );
  if (owner === 0) return;
  const name = await accountName("passwd", owner);
  throw new WrongUserError(
    `${path} belongs to user ${name}, and as root \`nanocdn ${command.name}\` ${command.runAsOwnerOf.asRoot}; ` +
      `run it as the user that owns ${path}: sudo -u ${quoted(name)} nanocdn ${argv.map(quoted).join(" ")}`,
  );
}
