import { createHash } from "node:crypto";
import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

// The worker's users in the workerd tests: one, with a {SHA} htpasswd line.
const WORKERD_USER = "client";
const WORKERD_PASSWORD = "workerd-test-password";
const htpasswd = `${WORKERD_USER}:{SHA}${createHash("sha1").update(WORKERD_PASSWORD).digest("base64")}\n`;

export default defineConfig({
  test: {
    globalSetup: ["test/global-setup.ts"],
    projects: [
      {
        test: {
          name: "node",
          include: ["test/**/*.test.ts"],
          exclude: ["test/workerd/**"],
          testTimeout: 30_000,
          hookTimeout: 60_000,
        },
      },
      {
        // Runs inside workerd, with the R2 binding of wrangler.toml and the users above.
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: { bindings: { HTPASSWD: htpasswd, TEST_USER: WORKERD_USER, TEST_PASSWORD: WORKERD_PASSWORD } },
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
