import type { Logger } from "../../src/handlers/logger.ts";

/** A logger that drops every line, for code under test that must be given one. */
export const quiet: Logger = { info() {}, warn() {}, error() {} };
