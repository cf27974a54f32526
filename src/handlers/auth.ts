import { type ClusterAuth, NODE_HEADER } from "./cluster-auth.ts";
import { ForbiddenError, UnauthorizedError } from "./http-errors.ts";

/** Checks a user's password; the Node and worker adapters read an htpasswd file into one. */
export interface Credentials {
  verify(user: string, password: string): Promise<boolean>;
}

/**
 * Who sent a request, as far as this node could prove it. A monitor is a
 * user named in `monitor_users`: it reads /metrics and /status, nothing else.
 */
export type Principal = { kind: "anonymous" } | { kind: "user"; user: string } | { kind: "monitor"; user: string } | { kind: "node"; node: string };

const ANONYMOUS: Principal = { kind: "anonymous" };

function parseBasic(header: string | null): { user: string; password: string } | undefined {
  const match = /^Basic\s+([A-Za-z0-9+/]+=*)\s*$/i.exec(header ?? "");
  if (!match) return undefined;
  let decoded: string;
  try {
    decoded = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(Uint8Array.from(atob(match[1]!), (c) => c.charCodeAt(0)));
  } catch {
    return undefined;
  }
  const colon = decoded.indexOf(":");
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/**
 * Works out who sent the request: a peer node (signed), a user (Basic auth
 * against the htpasswd credentials) or nobody. Wrong credentials are an error
 * even where none are needed, so a client never silently runs anonymous.
 */
export async function identify(
  request: Request,
  target: string,
  credentials: Credentials,
  clusterAuth: ClusterAuth | undefined,
  monitorUsers: ReadonlySet<string> = new Set(),
): Promise<Principal> {
  if (request.headers.has(NODE_HEADER)) {
    if (!clusterAuth) throw new UnauthorizedError("this node takes no node-to-node requests (no cluster secret)");
    return { kind: "node", node: await clusterAuth.verify(request.headers, request.method, target) };
  }
  const header = request.headers.get("Authorization");
  if (header === null) return ANONYMOUS;
  const basic = parseBasic(header);
  if (!basic || !(await credentials.verify(basic.user, basic.password))) {
    throw new UnauthorizedError("wrong user name or password");
  }
  return { kind: monitorUsers.has(basic.user) ? "monitor" : "user", user: basic.user };
}

/** For anything that reads or changes files beyond the public ones. */
export function requireAuthenticated(principal: Principal, action: string): void {
  if (principal.kind === "anonymous") throw new UnauthorizedError(`${action} needs credentials`);
  if (principal.kind === "monitor") throw new ForbiddenError(`${action} is not allowed to monitor_users (they read /metrics and /status only)`);
}

/** For the operator's views (/metrics, /status): any user, monitors included, and the peer nodes. */
export function requireObserver(principal: Principal, action: string): void {
  if (principal.kind === "anonymous") throw new UnauthorizedError(`${action} needs credentials`);
}
