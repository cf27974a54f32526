import { stat } from "node:fs/promises";
import { dirname } from "node:path";
import { text } from "node:stream/consumers";
import { read } from "read";
import { type Command, type CommandInput, UsageError } from "./command.ts";
import { loadConfig } from "./config.ts";
import { CONFIG_OPTION, configFileOf } from "./serve.ts";
import { checkUserName, listUsers, removeUser, setUser } from "../users/htpasswd-edit.ts";

const options = {
  htpasswd: { type: "string", value: "FILE", meaning: "the htpasswd file (default: the configuration's htpasswd)" },
  config: CONFIG_OPTION,
} as const;

/** The file named by --htpasswd, else the one the node would use with this configuration. */
async function usersFile(input: { htpasswd?: string; config?: string }): Promise<string> {
  const config = await loadConfig({ file: input.config, flags: input.htpasswd ? { htpasswd: input.htpasswd } : {} });
  return config.htpasswd;
}

/** From a prompt on a terminal (twice, not echoed), else the first line of stdin. */
async function newPassword(name: string): Promise<string> {
  if (!process.stdin.isTTY) {
    const password = (await text(process.stdin)).split(/\r?\n/)[0] ?? "";
    if (password === "") throw new UsageError("no password on stdin (the first line is the password)");
    return password;
  }
  const password = await read({ prompt: `Password for ${name}: `, silent: true, replace: "", output: process.stderr });
  if (password === "") throw new UsageError("the password may not be empty");
  const again = await read({ prompt: "Again: ", silent: true, replace: "", output: process.stderr });
  if (again !== password) throw new UsageError("the passwords differ; nothing was changed");
  return password;
}

const asFiles = (o: Record<string, string | boolean | undefined>) => ({ htpasswd: o.htpasswd as string | undefined, config: configFileOf(o) });

/** The folder a new users file would be made in; none when the file exists (a rewrite keeps its owner and mode). */
async function newUsersFileFolder({ options }: CommandInput): Promise<string | undefined> {
  const file = await usersFile(asFiles(options));
  const exists = await stat(file).then(
    () => true,
    () => false,
  );
  return exists ? undefined : dirname(file);
}

export const userAddCommand: Command = {
  name: "user add",
  summary: "add a user, or set a new password for one (bcrypt; password from a prompt or the first line of stdin)",
  args: "NAME",
  positionals: [1, 1],
  options,
  runAsOwnerOf: { path: newUsersFileFolder, asRoot: "would make a users file there that only root can read" },
  async run({ options, positionals: [name] }) {
    checkUserName(name!);
    const file = await usersFile(asFiles(options));
    const password = await newPassword(name!);
    const added = await setUser(file, name!, password);
    process.stderr.write(`nanocdn: ${added ? "added" : "changed the password of"} '${name}' in ${file}\n`);
    return 0;
  },
};

export const userRemoveCommand: Command = {
  name: "user remove",
  summary: "remove a user",
  args: "NAME",
  positionals: [1, 1],
  options,
  async run({ options, positionals: [name] }) {
    const file = await usersFile(asFiles(options));
    if (!(await removeUser(file, name!))) {
      process.stderr.write(`nanocdn: there is no user '${name}' in ${file}\n`);
      return 1;
    }
    process.stderr.write(`nanocdn: removed '${name}' from ${file}\n`);
    return 0;
  },
};

export const userListCommand: Command = {
  name: "user list",
  summary: "list the users, one name a line",
  options,
  async run({ options }) {
    const file = await usersFile(asFiles(options));
    const users = await listUsers(file).catch((error: NodeJS.ErrnoException) => {
      throw error.code === "ENOENT" ? new Error(`there is no htpasswd file at ${file}; add a user to create it`) : error;
    });
    process.stdout.write(users.map((user) => `${user}\n`).join(""));
    return 0;
  },
};
