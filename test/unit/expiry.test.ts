import { describe, expect, it } from "vitest";
import { requestedDeleteAt } from "../../src/handlers/expiry.ts";
import { isExpired } from "../../src/storage/blob-store.ts";

describe("an upload's expiry", () => {
  it("gives a file at least the seconds X-Delete-After asks for, wherever in a second it came", () => {
    for (const nowMs of [1_767_225_600_000, 1_767_225_600_001, 1_767_225_600_999]) {
      const deleteAt = requestedDeleteAt(new Headers({ "X-Delete-After": "1" }), nowMs)!;
      expect(isExpired({ deleteAt }, nowMs + 999), String(nowMs)).toBe(false);
      expect(isExpired({ deleteAt }, nowMs + 2000), String(nowMs)).toBe(true);
    }
  });

  it("takes X-Delete-At as the moment it names", () => {
    expect(requestedDeleteAt(new Headers({ "X-Delete-At": "1767225700" }), 1_767_225_600_500)).toBe(1_767_225_700);
    expect(() => requestedDeleteAt(new Headers({ "X-Delete-At": "1767225600" }), 1_767_225_600_500)).toThrow(/not in the future/);
  });

  it("takes a past X-Delete-At from a peer, whose clock may be behind (the file is expired at once)", () => {
    const passedOn = new Headers({ "X-Delete-At": "1767225598" });
    expect(requestedDeleteAt(passedOn, 1_767_225_600_500, true)).toBe(1_767_225_598);
    expect(() => requestedDeleteAt(passedOn, 1_767_225_600_500)).toThrow(/not in the future/);
  });

  it("refuses a moment after the year 9999, which no HTTP date (Expires) can carry", () => {
    expect(requestedDeleteAt(new Headers({ "X-Delete-At": "253402300799" }), 1_767_225_600_500)).toBe(253_402_300_799);
    expect(() => requestedDeleteAt(new Headers({ "X-Delete-At": "253402300800" }), 1_767_225_600_500)).toThrow(/after the year 9999/);
    expect(() => requestedDeleteAt(new Headers({ "X-Delete-After": "999999999999" }), 1_767_225_600_500)).toThrow(/after the year 9999/);
  });
});
