import { afterEach, describe, expect, it } from "vitest";
import { isNotModified } from "../../src/handlers/blob-response.ts";

describe("HTTP-dates in conditional reads", () => {
  const zone = process.env.TZ;
  afterEach(() => {
    if (zone === undefined) delete process.env.TZ;
    else process.env.TZ = zone;
  });

  // Modified at 10:00 GMT; the client's copy is from 08:49:37 GMT the same day, in each form RFC 9110 (5.6.7) allows.
  const meta = { size: 1, lastModified: new Date("1994-11-06T10:00:00Z"), etag: '"x"' };
  const older = ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"];

  it("reads every form as GMT, whatever this machine's zone", () => {
    // Five hours behind GMT: asctime's form read as local time would be after the change.
    process.env.TZ = "America/New_York";
    for (const since of older) expect(isNotModified(undefined, since, meta), since).toBe(false);
    for (const since of ["Sun, 06 Nov 1994 10:00:00 GMT", "Sun Nov  6 10:00:00 1994"]) expect(isNotModified(undefined, since, meta), since).toBe(true);
  });

  it("ignores what is no HTTP-date", () => {
    for (const since of ["2099", "tomorrow", "Sun, 6 Nov 2099 08:49:37 GMT", "sun, 06 nov 2099 08:49:37 gmt"]) {
      expect(isNotModified(undefined, since, meta), since).toBe(false);
    }
  });
});
