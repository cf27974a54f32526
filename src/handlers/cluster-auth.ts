import { UnauthorizedError } from "./http-errors.ts";

export const NODE_HEADER = "X-Nanocdn-Node";
export const SIGNATURE_HEADER = "X-Nanocdn-Signature";

const encoder = new TextEncoder();

function hex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

function unhex(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (!/^(?:[0-9a-f]{2})+$/.test(text)) return undefined;
  return Uint8Array.from(text.match(/../g)!, (pair) => parseInt(pair, 16));
}

/**
 * Node-to-node authentication: every request a node sends to a peer carries
 * its id and an HMAC-SHA256, keyed with the shared cluster secret, over the
 * id, a timestamp, the method and the path. The secret itself never travels,
 * and a captured signature is worthless after `maxSkewMs`.
 */
export class ClusterAuth {
  readonly #key: Promise<CryptoKey>;
  readonly #maxSkewMs: number;

  constructor(
    readonly nodeId: string,
    secret: string,
    { maxSkewMs = 60_000 }: { maxSkewMs?: number } = {},
  ) {
    this.#key = crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
      "sign",
      "verify",
    ]);
    this.#maxSkewMs = maxSkewMs;
  }

  static #payload(node: string, timestamp: string, method: string, target: string): Uint8Array<ArrayBuffer> {
    // TextEncoder never returns shared memory; Web Crypto's types want that said.
    return encoder.encode(`${node}\n${timestamp}\n${method.toUpperCase()}\n${target}`) as Uint8Array<ArrayBuffer>;
  }

  /** Headers that authenticate this node's `method target` request to a peer. */
  async sign(method: string, target: string): Promise<Record<string, string>> {
    const timestamp = String(Date.now());
    const mac = await crypto.subtle.sign("HMAC", await this.#key, ClusterAuth.#payload(this.nodeId, timestamp, method, target));
    return { [NODE_HEADER]: this.nodeId, [SIGNATURE_HEADER]: `${timestamp}.${hex(mac)}` };
  }

  /** The id of the peer that signed the request; throws when the signature does not prove it. */
  async verify(headers: Headers, method: string, target: string): Promise<string> {
    const node = headers.get(NODE_HEADER) ?? "";
    const [timestamp = "", mac = ""] = (headers.get(SIGNATURE_HEADER) ?? "").split(".");
    const signature = unhex(mac);
    const age = Math.abs(Date.now() - Number(timestamp));
    const valid =
      signature !== undefined &&
      Number.isFinite(age) &&
      age <= this.#maxSkewMs &&
      (await crypto.subtle.verify("HMAC", await this.#key, signature, ClusterAuth.#payload(node, timestamp, method, target)));
    if (!valid) throw new UnauthorizedError("node-to-node request with a missing, stale or wrong signature");
    return node;
  }
}
