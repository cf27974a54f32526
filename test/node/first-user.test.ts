import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { announceFirstUser, createFirstUser, generateFirstUser } from "../../src/adapters/node/users/first-user.ts";

describe("the first user of a node started on the defaults", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "nanocdn-first-user-"));
    // The password banner goes to stderr, for the operator: not into the test output.
    vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await rm(dir, { recursive: true, force: true });
  });

  it("is made on the first start only: later starts hash no password", async () => {
    const htpasswd = join(dir, "data", "htpasswd");
    const copy = join(dir, "data", "initial-credentials");
    const made: string[] = [];
    const generate = () => {
      const user = generateFirstUser();
      made.push(user.password);
      return user;
    };
    expect(await createFirstUser(htpasswd, copy, generate)).toBe(true);
    expect(made).toHaveLength(1);
    const line = await readFile(htpasswd, "utf8");
    expect(line).toMatch(/^admin:\$2y\$10\$.{53}\n$/);
    expect((await stat(htpasswd)).mode & 0o777).toBe(0o600);
    expect(await readFile(copy, "utf8")).toBe(`admin:${made[0]}\n`);

    expect(await createFirstUser(htpasswd, copy, generate)).toBe(false);
    expect(made).toHaveLength(1);
    expect(await readFile(htpasswd, "utf8")).toBe(line);
  });

  it("prints the password to a terminal only: any other output is a log", async () => {
    const user = generateFirstUser();
    const copy = join(dir, "initial-credentials");
    const printed = () =>
      vi
        .mocked(process.stderr.write)
        .mock.calls.map(([text]) => String(text))
        .join("");
    await announceFirstUser(user, "users", copy, false);
    expect(printed()).not.toContain(user.password);
    expect(printed()).toContain(`password: in ${copy}`);
    vi.mocked(process.stderr.write).mockClear();
    await announceFirstUser(user, "users", copy, true);
    expect(printed()).toContain(`password: ${user.password}\n`);
    expect(await readFile(copy, "utf8")).toBe(`admin:${user.password}\n`);
  });
});
