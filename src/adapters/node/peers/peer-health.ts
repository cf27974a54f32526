import { EventEmitter } from "node:events";
import type { Logger } from "../../../handlers/logger.ts";

export interface HealthPolicy {
  /** Failed probes in a row that mark a peer down (a refused connection does at once). */
  fall: number;
  /** Good probes in a row that mark it up again. */
  rise: number;
}

interface State {
  up: boolean;
  /** Seen up by a probe since this node started: until then, failing is what a peer still starting does. */
  seen: boolean;
  streak: number;
  since: Date;
  lastError?: string;
}

/** What a process that talks to peers needs of their health: to ask it, and to report a refusal. */
export interface PeerView {
  isUp(id: string): boolean;
  /** The peer refused a connection: it is down now, whatever the last probe said. */
  refused(id: string, reason: string): void;
}

export interface PeerHealthSnapshot {
  id: string;
  up: boolean;
  since: string;
  lastError?: string;
}

/**
 * What this node believes about each peer, haproxy-style: down after `fall`
 * failures in a row, up after `rise` successes. Peers start up, so the first
 * request is tried rather than refused. Emits `up` and `down` with the id.
 */
export class PeerHealth extends EventEmitter<{ up: [string]; down: [string] }> implements PeerView {
  readonly #states = new Map<string, State>();

  constructor(
    ids: readonly string[],
    private readonly policy: HealthPolicy,
    private readonly log: Logger,
  ) {
    super();
    for (const id of ids) this.#states.set(id, { up: true, seen: false, streak: 0, since: new Date() });
  }

  isUp(id: string): boolean {
    return this.#states.get(id)?.up ?? false;
  }

  refused(id: string, reason: string): void {
    this.record(id, false, { refused: true, reason });
  }

  /** Counts one probe or request outcome; `refused` marks the peer down at once. */
  record(id: string, ok: boolean, failure?: { refused?: boolean; reason?: string }): void {
    const state = this.#states.get(id);
    if (!state) return;
    if (ok) state.seen = true;
    if (ok === state.up) {
      state.streak = 0;
      if (!ok && failure?.reason !== state.lastError) {
        // Still down, for another reason (refused at first, now a bad certificate): say so.
        state.lastError = failure?.reason;
        this.log[state.seen ? "warn" : "info"]({ peer: id, reason: state.lastError }, "peer is still down");
      }
      return;
    }
    state.streak++;
    if (!ok) state.lastError = failure?.reason;
    const needed = ok ? this.policy.rise : failure?.refused ? 1 : this.policy.fall;
    if (state.streak < needed) return;
    state.up = ok;
    state.streak = 0;
    state.since = new Date();
    if (ok) state.lastError = undefined;
    if (ok) this.log.info({ peer: id }, "peer is up");
    else if (state.seen) this.log.warn({ peer: id, reason: state.lastError }, "peer is down");
    else this.log.info({ peer: id, reason: state.lastError }, "peer not reachable yet");
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
