import { createHash } from "node:crypto";
import { availableParallelism } from "node:os";
import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";
import { APACHE_HTPASSWD, APACHE_USERS } from "./test/helpers/credentials.ts";

// The worker's users in the workerd tests: one with a {SHA} htpasswd line, and one with SHA-512 crypt (node:crypto in workerd).
const WORKERD_USER = "client";
const WORKERD_PASSWORD = "workerd-test-password";
const [shaCryptUser, shaCryptPassword] = APACHE_USERS.find(([, , type]) => type.includes("$6$"))!;
const shaCryptLine = APACHE_HTPASSWD.split("\n").find((line) => line.startsWith(`${shaCryptUser}:`))!;
const htpasswd = `${WORKERD_USER}:{SHA}${createHash("sha1").update(WORKERD_PASSWORD).digest("base64")}\n${shaCryptLine}\n`;

const UNIT = ["test/unit/**/*.test.ts", "test/storage/memory-store.test.ts", "test/storage/caching-store.test.ts", "test/portability.test.ts"];

export default defineConfig({
  test: {
    // Two files at a time even on two cores (vitest's default there is one):
    // most tests wait on nodes, rsync and timers rather than compute, and
    // each worker takes its own slice of ports (test/helpers/ports.ts).
    // On 2 cores the whole suite took 502 s this way against 683 s.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    projects: [
      {
        // In-process tests: no built sources, no processes, seconds in all (`npm run test:fast`).
        test: {
          name: "unit",
          include: UNIT,
        },
      },
      {
        test: {
          name: "node",
          globalSetup: ["test/global-setup.ts"],
          include: ["test/**/*.test.ts"],
          exclude: ["test/workerd/**", ...UNIT],
          testTimeout: 30_000,
          hookTimeout: 60_000,
        },
      },
      {
        // Runs inside workerd, with the R2 binding of wrangler.toml and the users above.
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              bindings: {
                HTPASSWD: htpasswd,
                TEST_USER: WORKERD_USER,
                TEST_PASSWORD: WORKERD_PASSWORD,
                SHA_CRYPT_USER: shaCryptUser,
                SHA_CRYPT_PASSWORD: shaCryptPassword,
              },
            },
          }),
        ],
        test: {
          name: "workerd",
          include: ["test/workerd/**/*.test.ts"],
          testTimeout: 30_000,
        },
      },
    ],
  },
});
