import { describe, expect, it } from "vitest";
import { PeerHealth } from "../../src/adapters/node/peers/peer-health.ts";
import { quiet } from "../helpers/quiet-log.ts";

describe("PeerHealth", () => {
  const upPeer = () => {
    const health = new PeerHealth(["2"], { fall: 5, rise: 2 }, quiet);
    const changes: string[] = [];
    health.on("up", (id) => changes.push(`${id} up`));
    health.on("down", (id) => changes.push(`${id} down`));
    health.record("2", true);
    return { health, changes };
  };

  it("is up after one good probe at first, down after `fall` failures in a row, up again after `rise` successes", () => {
    const { health, changes } = upPeer();
    expect(health.isUp("2")).toBe(true);
    for (let i = 0; i < 4; i++) health.record("2", false, { reason: "timed out" });
    // A success between failures starts the count again.
    health.record("2", true);
    for (let i = 0; i < 4; i++) health.record("2", false, { reason: "timed out" });
    expect(health.isUp("2")).toBe(true);
    health.record("2", false, { reason: "timed out" });
    expect(health.isUp("2")).toBe(false);
    health.record("2", true);
    expect(health.isUp("2")).toBe(false);
    health.record("2", true);
    expect(health.isUp("2")).toBe(true);
    expect(changes).toEqual(["2 up", "2 down", "2 up"]);
  });

  it("takes one refused connection for down at once, however many failures `fall` asks for", () => {
    const { health, changes } = upPeer();
    health.failed("2", { refused: true, reason: "connection refused (ECONNREFUSED)" });
    expect(health.isUp("2")).toBe(false);
    expect(health.snapshot()).toMatchObject([{ id: "2", up: false, lastError: "connection refused (ECONNREFUSED)" }]);
    expect(changes).toEqual(["2 up", "2 down"]);
  });
});
