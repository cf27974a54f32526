import type { OptionSpec } from "./command.ts";
import { CONFIG_KEYS, type ConfigKey, configSchema } from "./config.ts";

interface KeyHelp {
  meaning: string;
  /** What stands when the key is not set, for keys whose schema has no default. */
  unset?: string;
  /** What the value is, in the usage. */
  value?: string;
  /** A value for the example config, for a key without a default whose `value` is no valid one. */
  example?: string | number;
}

/**
 * What each configuration key means, for `--help` and the example config.
 * Keys and defaults come from the schema; a key missing here fails the type check.
 */
export const CONFIG_HELP: Record<ConfigKey, KeyHelp> = {
  node: { meaning: "this node's id: the first segment of the names it creates", value: "ID" },
  listen: { meaning: "host:port to serve HTTP on; IPv6 as [::1]:8080", value: "HOST:PORT" },
  data: { meaning: "data folder: files/ (the store), tmp/ (uploads in progress)", value: "DIR" },
  htpasswd: {
    meaning: "users, in nginx/Apache htpasswd format; re-read when it changes. Unset and missing: the first start creates it with one user",
    unset: "<data>/htpasswd",
    value: "FILE",
  },
  max_upload_bytes: { meaning: "larger uploads answer 413", value: "BYTES" },
  cache_max_age: { meaning: "max-age of Cache-Control on reads, in seconds", value: "SECONDS" },
  tls_cert: { meaning: "PEM certificate chain; with tls_key, the node serves HTTPS (renewals are picked up)", unset: "none", value: "FILE" },
  tls_key: { meaning: "PEM private key for tls_cert", unset: "none", value: "FILE" },
  sync_copies: {
    meaning: "nodes (this one included) whose disks hold an upload before its 201; 1 answers at once and replicates afterwards",
    unset: "2 with peers to replicate to (rsync), 1 without",
    value: "N",
    example: 2,
  },
  scrub_interval: { meaning: "seconds between background re-hashes of every file, repairing bad copies from the peers; 0 is off", value: "SECONDS" },
  fsync: { meaning: "fsync every file and its folder before answering 201", value: "BOOL" },
  peer_fsync: { meaning: "the peers' rsync fsyncs the copy of each upload before renaming it into place (slower uploads)", value: "BOOL" },
  min_free_bytes: { meaning: "/check/ fails below this much free disk space", value: "BYTES" },
  min_free_percent: {
    meaning: "the disk's reserve is the larger of min_free_bytes and this percentage of its size: /check/ fails and uploads go to peers below it",
    value: "PERCENT",
  },
  access_log: { meaning: "one JSON line per request", value: "BOOL" },
  log_level: { meaning: "debug, info, warn, error or silent", value: "LEVEL" },
  workers: { meaning: '"auto" (one per core) or a number of serving processes', value: "N" },
  memory_cache_bytes: { meaning: "memory per serving process for small files; 0 keeps no file bytes", value: "BYTES" },
  memory_cache_file_bytes: { meaning: "larger files always stream from disk", value: "BYTES" },
  memory_cache_revalidate_ms: { meaning: "a cached file or miss is checked on disk again after this long", value: "MS" },
  shutdown_grace: { meaning: "seconds SIGTERM waits for requests in flight before closing their connections", value: "SECONDS" },
  client_timeout_ms: {
    meaning: "a request body that stops coming for this long ends its connection (0: never); a request has no limit on its whole time",
    value: "MS",
  },
  peers: {
    meaning: 'the other nodes: [[peers]] tables with id, url, rsync; in a flag or the environment JSON, or "2=http://10.0.0.2:8080 3=…"',
    unset: "none",
    value: "PEERS",
  },
  cluster_secret_file: { meaning: "file with the secret the nodes share (16+ characters, mode 600); required with peers", unset: "none", value: "FILE" },
  url_signing_secret_file: {
    meaning: "keys of signed URLs, one a line (16+ characters, mode 600): the first signs, all verify; re-read when it changes",
    unset: "none (signed URLs refused)",
    value: "FILE",
  },
  edge_purge_zone: {
    meaning:
      "the Cloudflare zone (its id) of the edge's domain; with edge_purge_token_file, the public files this node deletes are purged from the edge's caches everywhere",
    unset: "none",
    value: "ZONE",
  },
  edge_purge_token_file: { meaning: "file with a Cloudflare API token that may purge the zone's cache (mode 600)", unset: "none", value: "FILE" },
  edge_purge_api: { meaning: "where purges go: an https:// address (http:// only on this machine)", value: "URL" },
  ca_file: { meaning: "PEM file of a private CA for peers reached over https://", unset: "system CAs", value: "FILE" },
  health_interval_ms: { meaning: "how often each peer's /check/ (and the local store) is probed", value: "MS" },
  health_fall: { meaning: "failed probes in a row before a peer is down", value: "N" },
  health_rise: { meaning: "good probes in a row before a peer is up again", value: "N" },
  peer_connect_timeout_ms: { meaning: "connect time-out of node-to-node requests", value: "MS" },
  peer_timeout_ms: { meaning: "time to the first response byte of node-to-node requests", value: "MS" },
  peer_read_timeout_ms: { meaning: "a read through the peers gives each this long to connect and start answering, then moves on", value: "MS" },
  peer_read_hedge_ms: { meaning: "a read through the peers with no answer from one after this long asks the next one as well", value: "MS" },
  replication_batch_ms: { meaning: "changes wait this long to be pushed together", value: "MS" },
  full_pass_interval: { meaning: "seconds between full rsync -a --delete passes to each peer", value: "SECONDS" },
  replication_max_pending: { meaning: "queued paths per peer before the queue is dropped for a full pass", value: "N" },
  rsync_bwlimit: { meaning: "cap on replication traffic per transfer, KiB/s (0: none)", value: "KIBPS" },
  rsync_ssh: { meaning: "the -e command for ssh destinations", unset: "ssh", value: "COMMAND" },
  rsyncd_listen: { meaning: "run an rsync daemon on this host:port for the peers' pushes", unset: "none", value: "HOST:PORT", example: "0.0.0.0:8873" },
  rsyncd_hosts_allow: { meaning: "the rsync daemon's hosts allow", unset: "any", value: "HOSTS" },
  monitor_users: { meaning: "users who may read /metrics and /status and nothing else", value: "USERS" },
  trusted_proxies: { meaning: "addresses or networks of proxies whose X-Forwarded-For the access log believes", value: "NETWORKS" },
};

/** A default as it would be written in the TOML file. */
function shown(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value) && value.length === 0) return "none";
  if (value !== null && typeof value === "object" && "port" in value && "host" in value) {
    const { host, port } = value as { host: string; port: number };
    return JSON.stringify(`${host.includes(":") ? `[${host}]` : host}:${port}`);
  }
  return String(value);
}

/** A key's default from the schema, as text; undefined when the schema has none. */
export function configDefault(key: ConfigKey): string | undefined {
  const result = configSchema.shape[key].safeParse(undefined);
  return result.success && result.data !== undefined ? shown(result.data) : CONFIG_HELP[key].unset;
}

/** Every configuration key as a command-line option. */
export function configOptions(): Record<string, OptionSpec> {
  return Object.fromEntries(
    CONFIG_KEYS.map((key) => [
      key.replaceAll("_", "-"),
      { type: "string", value: CONFIG_HELP[key].value, default: configDefault(key), meaning: CONFIG_HELP[key].meaning } satisfies OptionSpec,
    ]),
  );
}

/**
 * A TOML configuration with every key, each under a comment saying what it
 * means: the keys in `set` with those values, the others commented out at
 * their defaults.
 */
export function exampleConfig(set: Partial<Record<ConfigKey, string | number | boolean>>, header: string): string {
  const lines = header.split("\n").map((line) => `# ${line}`.trimEnd());
  for (const key of CONFIG_KEYS) {
    if (key === "peers") continue;
    const help = CONFIG_HELP[key];
    const fallback = configDefault(key);
    lines.push("", `# ${help.meaning}${fallback !== undefined ? ` (default: ${fallback})` : ""}`);
    if (set[key] !== undefined) lines.push(`${key} = ${JSON.stringify(set[key])}`);
    else {
      // A line uncommented as it stands is valid TOML and a valid value.
      const result = configSchema.shape[key].safeParse(undefined);
      const value =
        !result.success || result.data === undefined
          ? JSON.stringify(help.example ?? help.value ?? "")
          : Array.isArray(result.data)
            ? JSON.stringify(result.data)
            : fallback;
      lines.push(`# ${key} = ${value}`);
    }
  }
  // Tables come after every plain key in TOML.
  lines.push(
    "",
    `# ${CONFIG_HELP.peers.meaning}`,
    "# [[peers]]",
    '# id = "2"',
    '# url = "http://10.0.0.2:8080"',
    '# rsync = "rsync://node1@10.0.0.2:8873/from-1/"',
    "",
  );
  return lines.join("\n");
}
