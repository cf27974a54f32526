import { EventEmitter } from "node:events";
import type { Logger } from "../../../handlers/logger.ts";

export interface HealthPolicy {
  /** Failed probes or timed-out requests in a row that mark a peer down (a refused connection does at once). */
  fall: number;
  /** Good probes in a row that mark it up again (one, until it was first seen up). */
  rise: number;
}

interface State {
  up: boolean;
  /** Up at least once since this node started. */
  seenUp: boolean;
  streak: number;
  since: Date;
  lastError?: string;
}

/** What a process that talks to peers needs of their health: to ask it, and to report a failed request. */
export interface PeerView {
  isUp(id: string): boolean;
  /**
   * A request to the peer failed: a refused connection marks it down now,
   * whatever the last probe said; a time-out counts like a failed probe.
   */
  failed(id: string, failure: RequestFailure): void;
}

export interface RequestFailure {
  refused: boolean;
  reason: string;
}

export interface PeerHealthSnapshot {
  id: string;
  up: boolean;
  since: string;
  lastError?: string;
}

/**
 * What this node believes about each peer, haproxy-style: down after `fall`
 * failures in a row, up after `rise` successes. A peer is down until its
 * first good probe, and up after that one alone: a node that starts knows
 * at once which peers it can use. Emits `up` and `down` with the id.
 */
export class PeerHealth extends EventEmitter<{ up: [string]; down: [string] }> implements PeerView {
  readonly #states = new Map<string, State>();

  constructor(
    ids: readonly string[],
    private readonly policy: HealthPolicy,
    private readonly log: Logger,
  ) {
    super();
    for (const id of ids) this.#states.set(id, { up: false, seenUp: false, streak: 0, since: new Date(), lastError: "not probed yet" });
  }

  isUp(id: string): boolean {
    return this.#states.get(id)?.up ?? false;
  }

  failed(id: string, failure: RequestFailure): void {
    this.record(id, false, failure);
  }

  /** Counts one probe or request outcome; `refused` marks the peer down at once. */
  record(id: string, ok: boolean, failure?: Partial<RequestFailure>): void {
    const state = this.#states.get(id);
    if (!state) return;
    if (ok === state.up) {
      state.streak = 0;
      if (!ok && failure?.reason !== state.lastError) {
        // Still down, for another reason (refused at first, now a bad certificate): say so.
        // Before it was ever up, that is what a peer still starting does (a new cluster's first start).
        state.lastError = failure?.reason;
        if (state.seenUp) this.log.warn({ peer: id, reason: state.lastError }, "peer is still down");
        else this.log.info({ peer: id, reason: state.lastError }, "peer not reachable yet");
      }
      return;
    }
    state.streak++;
    if (!ok) state.lastError = failure?.reason;
    const needed = ok ? (state.seenUp ? this.policy.rise : 1) : failure?.refused ? 1 : this.policy.fall;
    if (state.streak < needed) return;
    state.up = ok;
    if (ok) state.seenUp = true;
    state.streak = 0;
    state.since = new Date();
    if (ok) state.lastError = undefined;
    if (ok) this.log.info({ peer: id }, "peer is up");
    else this.log.warn({ peer: id, reason: state.lastError }, "peer is down");
    this.emit(ok ? "up" : "down", id);
  }

  /** Replaces the view with one learned elsewhere (a serving process told by its primary). */
  set(id: string, up: boolean): void {
    const state = this.#states.get(id);
    if (!state || state.up === up) return;
    Object.assign(state, { up, streak: 0, since: new Date() });
    this.emit(up ? "up" : "down", id);
  }

  snapshot(): PeerHealthSnapshot[] {
    return [...this.#states].map(([id, s]) => ({
      id,
      up: s.up,
      since: s.since.toISOString(),
      ...(s.lastError !== undefined && { lastError: s.lastError }),
    }));
  }
}
