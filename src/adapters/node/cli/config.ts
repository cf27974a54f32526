import { readFile } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { parse as parseToml } from "smol-toml";
import { z } from "zod";
import { DEFAULT_CACHE_MAX_AGE, DEFAULT_MAX_UPLOAD_BYTES } from "../../../handlers/app.ts";
import { DEFAULT_READ_HEDGE_MS } from "../../../handlers/owner-routing.ts";
import { NODE_ID, RESERVED_SEGMENTS } from "../../../handlers/paths.ts";
import { CLOUDFLARE_API, isPurgeApiSafe } from "../process/edge-purge.ts";
import { parseNetwork } from "../process/trusted-proxies.ts";
import { suggest } from "./suggest.ts";

const nodeId = z
  .string()
  .regex(NODE_ID, "must be 1-32 letters, digits, '-' or '_', starting with a letter or digit")
  .refine((id) => !(RESERVED_SEGMENTS as readonly string[]).includes(id), "is a word the API reserves");

/** Env vars and flags arrive as text; TOML values arrive typed. Both are accepted. */
const got = (what: string) => (issue: { input?: unknown }) => `expected ${what}, got ${JSON.stringify(issue.input)}`;
const int = (min: number) =>
  z.preprocess(
    (v) => (typeof v === "string" && /^\s*-?\d+\s*$/.test(v) ? Number(v) : v),
    z
      .number({ error: got("a whole number") })
      .int({ error: got("a whole number") })
      .min(min, { error: `must be at least ${min}` }),
  );

/**
 * The longest a Node timer waits: setTimeout and setInterval take a longer
 * delay as 1 ms, so an interval of a month would run its work nonstop.
 */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** A delay that ends up in a timer, in `unit`s. */
const timer = (min: number, unit: "ms" | "seconds") => {
  const max = unit === "ms" ? MAX_TIMER_MS : Math.floor(MAX_TIMER_MS / 1000);
  return int(min).pipe(z.number().max(max, { error: `must be at most ${max} ${unit} (24.8 days, the longest a timer can wait)` }));
};
const timerMs = (min: number) => timer(min, "ms");
const timerSeconds = (min: number) => timer(min, "seconds");
const bool = z.preprocess((v) => (v === "true" || v === "1" ? true : v === "false" || v === "0" ? false : v), z.boolean({ error: got("true or false") }));

export interface ListenAddress {
  host: string;
  port: number;
}

const WILDCARD_TO_LOOPBACK: Record<string, string> = { "0.0.0.0": "127.0.0.1", "::": "::1" };

/** Whether two listening addresses would take one port: the same port on the same address, or on every address. */
function sharePort(a: ListenAddress, b: ListenAddress): boolean {
  return a.port === b.port && (a.host === b.host || a.host in WILDCARD_TO_LOOPBACK || b.host in WILDCARD_TO_LOOPBACK);
}

/** Where this machine reaches what listens at `address`: one on every interface answers on loopback. */
export function localUrl(scheme: "http" | "https", address: ListenAddress): { url: string; host: string } {
  const host = WILDCARD_TO_LOOPBACK[address.host] ?? address.host;
  return { url: `${scheme}://${host.includes(":") ? `[${host}]` : host}:${address.port}`, host };
}

const listen = z.string().transform((value, ctx): ListenAddress => {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value.trim());
  const port = Number(match?.[3]);
  if (!match || port > 65535) {
    ctx.addIssue({ code: "custom", message: "expected host:port, e.g. 127.0.0.1:8080 or [::1]:8080" });
    return z.NEVER;
  }
  if (port === 0) {
    ctx.addIssue({
      code: "custom",
      message: "port 0 takes whichever port is free, where peers and `nanocdn status` cannot find the node; choose one, e.g. 127.0.0.1:8080",
    });
    return z.NEVER;
  }
  return { host: match[1] ?? match[2]!, port };
});

/**
 * A peer in the environment or on the command line: JSON (`[{"id":"2","url":…}]`)
 * or the short form `2=http://10.0.0.2:8080 3=http://10.0.0.3:8080`.
 */
function parsePeers(value: unknown): unknown {
  if (typeof value !== "string") return value;
  const text = value.trim();
  if (text.startsWith("[")) {
    try {
      return JSON.parse(text);
    } catch {
      return value;
    }
  }
  if (text === "") return [];
  return text.split(/[\s,]+/).map((entry) => {
    const equals = entry.indexOf("=");
    return equals < 0 ? entry : { id: entry.slice(0, equals), url: entry.slice(equals + 1) };
  });
}

const peerUrl = z
  .string()
  .refine((value) => {
    try {
      const url = new URL(value);
      return (url.protocol === "http:" || url.protocol === "https:") && url.pathname === "/" && !url.search && !url.username;
    } catch {
      return false;
    }
  }, "expected the node's base URL, http:// or https://, without path, query or credentials")
  .transform((value) => new URL(value).origin);

const peer = z
  .object({
    id: nodeId,
    url: peerUrl,
    /** Where rsync pushes this node's files on that peer (replication). */
    rsync: z.string().min(1).optional(),
  })
  .strict();

export type PeerConfig = z.output<typeof peer>;

/** A list: a TOML array, or in the environment or a flag, words separated by commas or spaces. */
const list = <T extends z.ZodType<string>>(item: T) =>
  z.preprocess((v) => (typeof v === "string" ? v.split(/[\s,]+/).filter((w) => w !== "") : v), z.array(item, { error: "expected a list" }));

export const DEFAULT_MEMORY_CACHE_BYTES = 16 * 1024 * 1024;
export const DEFAULT_MEMORY_CACHE_FILE_BYTES = 128 * 1024;

export const configSchema = z
  .object({
    node: nodeId.default("1"),
    listen: listen.default({ host: "127.0.0.1", port: 8080 }),
    data: z.string().min(1).default("./data"),
    htpasswd: z.string().min(1).optional(),
    max_upload_bytes: int(0).default(DEFAULT_MAX_UPLOAD_BYTES),
    cache_max_age: int(0).default(DEFAULT_CACHE_MAX_AGE),
    tls_cert: z.string().min(1).optional(),
    tls_key: z.string().min(1).optional(),
    fsync: bool.default(true),
    /** Whether the peers' rsync fsyncs the copies of this node's uploads. */
    peer_fsync: bool.default(false),
    min_free_bytes: int(0).default(0),
    /** The disk's reserve is the larger of min_free_bytes and this share of its size. */
    min_free_percent: int(0)
      .pipe(z.number().max(90, { error: "must be at most 90" }))
      .default(1),
    access_log: bool.default(true),
    log_level: z.enum(["debug", "info", "warn", "error", "silent"]).default("info"),
    /** Serving processes: "auto" is one per core. */
    workers: z
      .preprocess(
        (v) => (typeof v === "string" && /^\s*\d+\s*$/.test(v) ? Number(v) : v),
        z.union([z.literal("auto"), z.number().int().min(1, { error: "must be at least 1" }).max(256, { error: "must be at most 256" })], {
          error: got('"auto" or a number of processes'),
        }),
      )
      .default("auto"),
    /** Memory per serving process for small files; 0 keeps no file bytes (metadata and misses are still kept briefly). */
    memory_cache_bytes: int(0).default(DEFAULT_MEMORY_CACHE_BYTES),
    memory_cache_file_bytes: int(0).default(DEFAULT_MEMORY_CACHE_FILE_BYTES),
    /** How long a cached answer stands before the disk is asked again (a replica may be deleted meanwhile). */
    memory_cache_revalidate_ms: int(0).default(1000),
    /** Seconds SIGTERM waits for requests in flight before it closes their connections. */
    shutdown_grace: timerSeconds(0).default(30),
    /** A request body that stops coming for this long ends its connection; 0: never. */
    client_timeout_ms: timerMs(0).default(60_000),
    peers: z.preprocess(parsePeers, z.array(peer, { error: "expected a list of peers, each with id and url" })).default([]),
    cluster_secret_file: z.string().min(1).optional(),
    /** Keys of signed URLs, one a line: the first signs, all verify. */
    url_signing_secret_file: z.string().min(1).optional(),
    /** The Cloudflare zone of the edge's domain: the public files this node deletes are purged from the edge's caches. */
    edge_purge_zone: z.string().min(1).optional(),
    /** File with a Cloudflare API token that may purge that zone's cache. */
    edge_purge_token_file: z.string().min(1).optional(),
    edge_purge_api: z
      .string()
      .refine(isPurgeApiSafe, "expected an https:// address (or http:// on this machine): the token goes there")
      .default(CLOUDFLARE_API),
    /** PEM file of a private CA that signed the peers' certificates. */
    ca_file: z.string().min(1).optional(),
    health_interval_ms: timerMs(50).default(1000),
    health_fall: int(1).default(5),
    health_rise: int(1).default(2),
    /** Connect time-out for every node-to-node request. */
    peer_connect_timeout_ms: timerMs(1).default(1000),
    /** How long a peer may take to start answering a request. */
    peer_timeout_ms: timerMs(1).default(5000),
    /** Nodes whose disks hold an upload before its 201; default 2 with peers to replicate to, 1 without. */
    sync_copies: int(1).optional(),
    /** Seconds between background re-hashes of every file this node holds; 0 is off. */
    scrub_interval: timerSeconds(0).default(7 * 24 * 3600),
    /** How long a peer may take to start answering a read, which then falls to the next copy. */
    peer_read_timeout_ms: timerMs(1).default(1000),
    /** How long a read through the peers waits for one copy before it asks the next one as well. */
    peer_read_hedge_ms: timerMs(0).default(DEFAULT_READ_HEDGE_MS),
    /** Changes wait this long to be pushed together. */
    replication_batch_ms: timerMs(0).default(100),
    /** Seconds between full `rsync -a --delete` passes to each peer. */
    full_pass_interval: timerSeconds(1).default(600),
    replication_max_pending: int(1).default(100_000),
    /** Caps replication traffic to each peer, in KiB/s (rsync --bwlimit); 0 is no cap. */
    rsync_bwlimit: int(0).default(0),
    /** The `-e` command for ssh destinations. */
    rsync_ssh: z.string().min(1).optional(),
    /** Run an rsync daemon here that receives the peers' pushes. */
    rsyncd_listen: listen.optional(),
    rsyncd_hosts_allow: z.string().min(1).optional(),
    /** Users who may read /metrics and /status, and nothing else. */
    monitor_users: list(z.string().min(1)).default([]),
    /** Proxies whose X-Forwarded-For the access log believes: addresses or networks. */
    trusted_proxies: list(z.string().refine((entry) => parseNetwork(entry) !== undefined, "expected an IP address or a network such as 10.0.0.0/8")).default(
      [],
    ),
  })
  .strict()
  .superRefine((config, ctx) => {
    if ((config.tls_cert === undefined) !== (config.tls_key === undefined)) {
      ctx.addIssue({ code: "custom", path: ["tls_cert"], message: "tls_cert and tls_key go together" });
    }
    const seen = new Set([config.node]);
    config.peers.forEach((p, index) => {
      if (p.id === config.node) {
        ctx.addIssue({ code: "custom", path: ["peers", index], message: `peer '${p.id}' is this node itself` });
      } else if (seen.has(p.id)) {
        ctx.addIssue({ code: "custom", path: ["peers", index], message: `node id '${p.id}' appears twice` });
      }
      seen.add(p.id);
    });
    const replicas = config.peers.filter((p) => p.rsync !== undefined).length;
    if (config.sync_copies !== undefined && config.sync_copies > replicas + 1) {
      ctx.addIssue({ code: "custom", path: ["sync_copies"], message: `must be at most 1 + the peers with an rsync destination (${replicas + 1})` });
    }
    if (config.peers.length > 0 && config.cluster_secret_file === undefined) {
      ctx.addIssue({ code: "custom", path: ["cluster_secret_file"], message: "required when peers are configured" });
    }
    if (config.rsyncd_listen !== undefined && sharePort(config.listen, config.rsyncd_listen)) {
      ctx.addIssue({ code: "custom", path: ["rsyncd_listen"], message: "takes the port of listen: give the rsync daemon a port of its own" });
    }
    if ((config.edge_purge_zone === undefined) !== (config.edge_purge_token_file === undefined)) {
      ctx.addIssue({ code: "custom", path: ["edge_purge_zone"], message: "edge_purge_zone and edge_purge_token_file go together" });
    }
  });

export type Config = Omit<z.output<typeof configSchema>, "sync_copies"> & {
  sync_copies: number;
  /** Where `data` and the other paths point, made absolute. */
  data: string;
  htpasswd: string;
  /** True when htpasswd was not configured: the node may create a first user. */
  htpasswdIsDefault: boolean;
  /** Where each key's value came from (the file, a variable, a flag), for error messages; a default is absent. */
  origin: Partial<Record<ConfigKey, string>>;
};

export type ConfigKey = keyof z.input<typeof configSchema>;
export const CONFIG_KEYS = Object.keys(configSchema.shape) as ConfigKey[];

export class ConfigError extends Error {
  /**
   * `mayPass`: every problem may pass by itself (a port another process
   * holds, an address or a name not up yet): a service manager tries again.
   */
  constructor(
    readonly problems: string[],
    readonly mayPass = false,
  ) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

/** zod's own words for a value of the wrong type name no key and no fix: these say what to write. */
function typeError(issue: z.core.$ZodRawIssue): string | undefined {
  if (issue.code !== "invalid_type") return undefined;
  const got = JSON.stringify(issue.input);
  if (issue.path?.[0] === "peers" && issue.expected === "object") {
    return `expected a peer, got ${got}: write id=url (2=http://10.0.0.2:8080) in a flag or variable, or a [[peers]] table with id and url in the file`;
  }
  if (issue.expected === "string") return `expected text in quotes, got ${got}${typeof issue.input === "number" ? `: write "${issue.input}"` : ""}`;
  return `expected ${issue.expected}, got ${got}`;
}

export const envName = (key: string) => `NANOCDN_${key.toUpperCase()}`;
export const flagName = (key: string) => `--${key.replaceAll("_", "-")}`;

/** What nanocdn reads from the environment besides the settings. */
const OTHER_VARIABLES = ["NANOCDN_CONFIG", "NANOCDN_PASSWORD"];

/**
 * The `NANOCDN_` variables that name no setting, each with the one likely
 * meant: a mistyped name is otherwise ignored in silence, and the node runs
 * on the default. Not an error, since other tools may share the prefix.
 */
export function strayVariables(env: NodeJS.ProcessEnv = process.env): { variable: string; meant?: string }[] {
  const known = [...CONFIG_KEYS.map(envName), ...OTHER_VARIABLES];
  return Object.keys(env)
    .filter((name) => name.startsWith("NANOCDN_") && !known.includes(name))
    .sort()
    .map((variable) => ({ variable, meant: suggest(variable, known) }));
}

export interface ConfigSources {
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Values from command-line flags, by config key. */
  flags?: Record<string, string>;
  cwd?: string;
}

/**
 * Builds the configuration from, in rising precedence: the embedded defaults,
 * the TOML file, `NANOCDN_<KEY>` environment variables and flags. Every bad
 * key is reported at once, each with where its value came from.
 */
export async function loadConfig({ file, env = process.env, flags = {}, cwd = process.cwd() }: ConfigSources = {}): Promise<Config> {
  const raw: Record<string, unknown> = {};
  const origin: Record<string, string> = {};
  if (file !== undefined) {
    let text: string;
    try {
      text = await readFile(resolve(cwd, file), "utf8");
    } catch (error) {
      throw new ConfigError([`cannot read config file ${file}: ${(error as Error).message}`]);
    }
    try {
      for (const [key, value] of Object.entries(parseToml(text))) {
        raw[key] = value;
        origin[key] = file;
      }
    } catch (error) {
      throw new ConfigError([`${file} is not valid TOML: ${(error as Error).message}`]);
    }
  }
  for (const key of CONFIG_KEYS) {
    const value = env[envName(key)];
    if (value !== undefined) {
      raw[key] = value;
      origin[key] = envName(key);
    }
  }
  for (const [key, value] of Object.entries(flags)) {
    raw[key] = value;
    origin[key] = flagName(key);
  }
  const result = configSchema.safeParse(raw, { error: typeError, reportInput: true });
  if (!result.success) {
    const where = (key: string) => (origin[key] ? ` (from ${origin[key]})` : " (not set)");
    throw new ConfigError(
      result.error.issues.map((issue) => {
        const top = issue.path[0] === undefined ? undefined : String(issue.path[0]);
        // Inside a list (peers), say which entry and field.
        const detail = issue.path
          .slice(1)
          .map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`))
          .join("");
        if (issue.code !== "unrecognized_keys") return `${top ?? ""}${detail}${where(top ?? "")}: ${issue.message}`;
        // A key unknown inside a table (a peer) came from where the table came from.
        const named = (key: string) => (top === undefined ? `${key}${where(key)}` : `${top}${detail}.${key}${where(top)}`);
        const known = top === undefined ? CONFIG_KEYS : Object.keys(peer.shape);
        const meant = (key: string) => suggest(key.replaceAll("-", "_"), known);
        return issue.keys.map((key) => `${named(key)}: unknown key${meant(key) ? `; did you mean ${meant(key)}?` : ""}`).join("\n  ");
      }),
    );
  }
  const config = result.data;
  const absolute = (path: string) => (isAbsolute(path) ? path : resolve(cwd, path));
  const data = absolute(config.data);
  return {
    ...config,
    data,
    htpasswd: config.htpasswd === undefined ? resolve(data, "htpasswd") : absolute(config.htpasswd),
    htpasswdIsDefault: config.htpasswd === undefined,
    origin,
    sync_copies: config.sync_copies ?? (config.peers.some((p) => p.rsync !== undefined) ? 2 : 1),
    tls_cert: config.tls_cert && absolute(config.tls_cert),
    tls_key: config.tls_key && absolute(config.tls_key),
    cluster_secret_file: config.cluster_secret_file && absolute(config.cluster_secret_file),
    ca_file: config.ca_file && absolute(config.ca_file),
    url_signing_secret_file: config.url_signing_secret_file && absolute(config.url_signing_secret_file),
    edge_purge_token_file: config.edge_purge_token_file && absolute(config.edge_purge_token_file),
  };
}
