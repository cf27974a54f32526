/**
 * What the handlers know of the other nodes. The Node adapter implements it
 * with undici and a health checker, the edge with fetch() over its origin
 * nodes; a lone node (and the worker over R2) has none.
 */
export interface Peers {
  /** Every node id of the cluster but this one. */
  readonly ids: readonly string[];
  /** False once the health checker has marked the peer down. */
  isUp(id: string): boolean;
  /**
   * Sends a request to a peer and resolves with its response, which the
   * caller owns (headers mutable, body streaming or in memory). Rejects with
   * PeerUnreachableError when the peer cannot be reached or does not answer
   * in time.
   */
  request(id: string, init: PeerRequest): Promise<Response>;
}

/**
 * A peer could not be asked, or did not answer: `nothingSent` when it cannot
 * have seen the request; `mayStillAct` when it took the request and did not
 * answer in time (hung, or cut off), so it may yet carry it out.
 */
export class PeerUnreachableError extends Error {
  constructor(
    message: string,
    readonly nothingSent: boolean,
    options?: { cause?: unknown; mayStillAct?: boolean },
  ) {
    super(message, options);
    this.name = "PeerUnreachableError";
    this.mayStillAct = options?.mayStillAct ?? false;
  }

  readonly mayStillAct: boolean;
}

export interface PeerRequest {
  method: string;
  /** Path and query, percent-encoded. */
  target: string;
  headers: Record<string, string>;
  body?: ReadableStream<Uint8Array> | null;
  /** A read that another copy may answer: the peer gets the shorter time-out of reads. */
  read?: boolean;
}
