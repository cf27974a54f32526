import { readFile } from "node:fs/promises";
import { type ConnectionOptions, rootCertificates } from "node:tls";
import { Agent, request } from "undici";
import { ClusterAuth } from "../../../handlers/cluster-auth.ts";
import type { Logger } from "../../../handlers/logger.ts";
import { LOCAL_ONLY_HEADER } from "../../../handlers/owner-routing.ts";
import { formatBytes, formatDuration } from "../../../handlers/status-page.ts";
import type { NodeFacts } from "../../../handlers/status.ts";
import { nodeSignature } from "../peers/node-signature.ts";
import { readClusterSecret } from "../process/background-services.ts";
import type { Command } from "./command.ts";
import { type Config, loadConfig, localUrl } from "./config.ts";
import { failureReason } from "../peers/failure-reason.ts";
import { CONFIG_OPTION, configFileOf } from "./serve.ts";

/** How long each node may take to answer. */
const ANSWER_TIMEOUT_MS = 5000;

const stderrLog: Logger = {
  info: () => {},
  warn: (_fields, message) => process.stderr.write(`nanocdn: ${message}\n`),
  error: (_fields, message) => process.stderr.write(`nanocdn: ${message}\n`),
};

/** Where this machine reaches the node the config describes, and whether that is through the loopback interface. */
function ownAddress(config: Config): { url: string; loopback: boolean } {
  const { url, host } = localUrl(config.tls_cert ? "https" : "http", config.listen);
  return { url, loopback: host === "::1" || host.startsWith("127.") || host === "localhost" };
}

/** A node that answered 401 or 403 is up: what it refused is how it was asked, with the reason it gave. */
type Answer = { node: string; facts: NodeFacts } | { node: string; error: string } | { node: string; refused: string };

/** What keeps the cluster from being all up and caught up, as one line each. */
function problemsOf(answers: Answer[], user: string | undefined): string[] {
  const problems: string[] = [];
  for (const answer of answers) {
    if ("error" in answer) {
      problems.push(`node ${answer.node} did not answer: ${answer.error}`);
      continue;
    }
    if ("refused" in answer) {
      problems.push(
        user === undefined
          ? `node ${answer.node} refused this node's signed request (${answer.refused}): every node's cluster_secret_file must hold the same secret, and their clocks must agree`
          : `node ${answer.node} refused the credentials of user '${user}' (${answer.refused}): check --user and NANOCDN_PASSWORD`,
      );
      continue;
    }
    const { node, facts } = answer;
    if (facts.factsError !== undefined) problems.push(`node ${node}: ${facts.factsError}`);
    if (facts.storeHealthy === false) problems.push(`node ${node}: its store fails its probe`);
    if (facts.ownFiles !== undefined && facts.ownFiles !== "complete") problems.push(`node ${node}: own files ${facts.ownFiles}`);
    for (const peer of facts.peers ?? []) if (!peer.up) problems.push(`node ${node} sees node ${peer.id} down${peer.lastError ? `: ${peer.lastError}` : ""}`);
    for (const r of facts.replication ?? []) {
      if (r.backlog > 0) problems.push(`node ${node}: ${r.backlog} changes wait to be pushed to node ${r.peer}`);
      if (r.needsFullPass) problems.push(`node ${node}: a full pass to node ${r.peer} is pending`);
      if (r.lastError) problems.push(`node ${node}: replication to node ${r.peer} failed: ${r.lastError}`);
    }
  }
  return problems;
}

function table(answers: Answer[]): string {
  const rows = [["node", "state", "version", "uptime", "disk free", "own files", "backlog"]];
  for (const answer of answers) {
    if (!("facts" in answer)) {
      rows.push([answer.node, "error" in answer ? "DOWN" : "refused", "", "", "", "", ""]);
      continue;
    }
    const { facts } = answer;
    const backlog = (facts.replication ?? []).reduce((sum, r) => sum + r.backlog, 0);
    rows.push([
      answer.node,
      facts.factsError === undefined ? "up" : "up, no facts",
      facts.version ?? "",
      formatDuration(facts.uptimeSeconds),
      formatBytes(facts.diskFreeBytes),
      facts.ownFiles ?? "",
      String(backlog),
    ]);
  }
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows
    .map((row) =>
      row
        .map((cell, column) => cell.padEnd(widths[column]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/**
 * `nanocdn status`: asks every node of the config (itself and its peers) for
 * its own facts, signed with the cluster secret (or as a user), prints them
 * and says what is wrong. Exit 0 only when every node answers, sees every
 * peer up, holds its own files and has nothing waiting to be replicated:
 * usable from cron or as a monitoring check.
 */
export const statusCommand: Command = {
  name: "status",
  summary: "show every node of the cluster; exit 0 when all are up and replication is caught up, 1 otherwise",
  options: {
    config: CONFIG_OPTION,
    user: { type: "string", value: "NAME", meaning: "ask as this user (password in NANOCDN_PASSWORD) instead of signing with the cluster secret" },
  },
  configFlags: true,
  run: ({ options, configFlags }) => clusterStatus(configFileOf(options), configFlags, options.user as string | undefined),
};

async function clusterStatus(file: string | undefined, flags: Record<string, string>, user: string | undefined): Promise<number> {
  const config = await loadConfig({ file, flags });
  let headersFor: () => Promise<Record<string, string>>;
  if (user !== undefined) {
    const password = process.env.NANOCDN_PASSWORD;
    if (password === undefined) throw new Error("--user needs the password in the environment variable NANOCDN_PASSWORD");
    const authorization = `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
    headersFor = async () => ({ Authorization: authorization });
  } else if (config.cluster_secret_file !== undefined) {
    const auth = new ClusterAuth(config.node, await readClusterSecret(config.cluster_secret_file, stderrLog), { mac: nodeSignature });
    headersFor = async () => ({ ...(await auth.sign("GET", "/status")), [LOCAL_ONLY_HEADER]: "1" });
  } else {
    throw new Error("a node without cluster_secret_file is asked as a user: --user NAME, with NANOCDN_PASSWORD set");
  }
  const ca = config.ca_file ? await readFile(config.ca_file) : undefined;
  const agent = (tls: ConnectionOptions) =>
    new Agent({
      connect: { timeout: ANSWER_TIMEOUT_MS, ...tls },
      headersTimeout: ANSWER_TIMEOUT_MS,
      bodyTimeout: ANSWER_TIMEOUT_MS,
    });
  const verified = agent({ ...(ca && { ca }), rejectUnauthorized: true });
  const own = ownAddress(config);
  // The node's certificate names its public host, not the address this machine reaches it at: for this
  // node the chain is checked (its own certificate may be its anchor: self-signed) but not the name, and
  // on loopback, where nothing can come between, not even the chain.
  const ownCert = config.tls_cert ? await readFile(config.tls_cert).catch(() => undefined) : undefined;
  const local = own.loopback
    ? agent({ rejectUnauthorized: false })
    : agent({ ca: [...(ca ? [ca] : rootCertificates), ...(ownCert ? [ownCert] : [])], checkServerIdentity: () => undefined });
  const nodes = [{ id: config.node, url: own.url, dispatcher: local }, ...config.peers.map((p) => ({ ...p, dispatcher: verified }))];
  try {
    const answers = await Promise.all(
      nodes.map(async ({ id, url, dispatcher }): Promise<Answer> => {
        try {
          const response = await request(`${url}/status`, { headers: await headersFor(), dispatcher });
          if (response.statusCode === 401 || response.statusCode === 403) {
            const reason = await response.body.json().then(
              (body) => (body as { message?: unknown }).message,
              () => undefined,
            );
            return { node: id, refused: typeof reason === "string" ? reason : `GET /status answered ${response.statusCode}` };
          }
          if (response.statusCode !== 200) {
            await response.body.dump();
            return { node: id, error: `GET /status answered ${response.statusCode}` };
          }
          const facts = (await response.body.json()) as NodeFacts & { node?: unknown };
          // Another node at this URL (peers' URLs swapped): its facts are not this one's.
          if (typeof facts.node === "string" && facts.node !== id) {
            return { node: id, error: `${url} answers as node ${facts.node}: check node ${id}'s url in the configuration` };
          }
          return { node: id, facts };
        } catch (error) {
          const { code, message } = error as { code?: string; message: string };
          return { node: id, error: code === undefined ? message : failureReason(code, ANSWER_TIMEOUT_MS) };
        }
      }),
    );
    const problems = problemsOf(answers, user);
    process.stdout.write(`${table(answers)}\n\n`);
    process.stdout.write(problems.length === 0 ? `all ${nodes.length} nodes up, replication caught up\n` : `${problems.join("\n")}\n`);
    return problems.length === 0 ? 0 : 1;
  } finally {
    await Promise.all([verified.close(), local.close()]);
  }
}
