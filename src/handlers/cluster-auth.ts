import { constantTimeEqual, type Mac, webCryptoMac } from "./mac.ts";
import { UnauthorizedError } from "./http-errors.ts";

/** The shortest cluster secret a node or the edge accepts. */
export const MIN_SECRET_LENGTH = 16;

export const NODE_HEADER = "X-Nanocdn-Node";
export const SIGNATURE_HEADER = "X-Nanocdn-Signature";

/**
 * Node-to-node authentication: every request a node sends to a peer carries
 * its id and an HMAC-SHA256, keyed with the shared cluster secret, over the
 * id, a timestamp, the method and the path. The secret itself never travels,
 * and a captured signature is worthless after `maxSkewMs`.
 */
export class ClusterAuth {
  readonly #mac: Mac;
  readonly #maxSkewMs: number;

  constructor(
    readonly nodeId: string,
    secret: string,
    { maxSkewMs = 60_000, mac = webCryptoMac }: { maxSkewMs?: number; mac?: (secret: string) => Mac } = {},
  ) {
    this.#mac = mac(secret);
    this.#maxSkewMs = maxSkewMs;
  }

  static #payload(node: string, timestamp: string, method: string, target: string): string {
    return `${node}\n${timestamp}\n${method.toUpperCase()}\n${target}`;
  }

  /** Headers that authenticate this node's `method target` request to a peer. */
  async sign(method: string, target: string): Promise<Record<string, string>> {
    const timestamp = String(Date.now());
    const mac = await this.#mac(ClusterAuth.#payload(this.nodeId, timestamp, method, target));
    return { [NODE_HEADER]: this.nodeId, [SIGNATURE_HEADER]: `${timestamp}.${mac}` };
  }

  /** The id of the peer that signed the request; throws when the signature does not prove it. */
  async verify(headers: Headers, method: string, target: string): Promise<string> {
    const node = headers.get(NODE_HEADER) ?? "";
    const [timestamp = "", mac = ""] = (headers.get(SIGNATURE_HEADER) ?? "").split(".");
    const age = Math.abs(Date.now() - Number(timestamp));
    const valid =
      /^[0-9a-f]{64}$/.test(mac) &&
      Number.isFinite(age) &&
      age <= this.#maxSkewMs &&
      constantTimeEqual(await this.#mac(ClusterAuth.#payload(node, timestamp, method, target)), mac);
    if (!valid) throw new UnauthorizedError("node-to-node request with a missing, stale or wrong signature");
    return node;
  }
}
