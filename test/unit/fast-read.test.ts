import { describe, expect, it } from "vitest";
import { TargetMemo } from "../../src/handlers/fast-read.ts";

describe("the fast reader's memo of parsed targets", () => {
  it("holds no more than its characters, whatever queries the targets carry", () => {
    const memo = new TargetMemo(10_000, 64 * 1024);
    const query = "x".repeat(15_000);
    for (let i = 0; i < 1000; i++) {
      memo.set(`/1/pub/logo.png?${i}${query}`, "1/pub/logo.png");
      expect(memo.chars).toBeLessThanOrEqual(64 * 1024);
    }
    // A target larger than the whole memo is never kept; the hot ones come back after a reset.
    memo.set(`/1/pub/a.png?${"y".repeat(70_000)}`, "1/pub/a.png");
    expect(memo.get(`/1/pub/a.png?${"y".repeat(70_000)}`)).toBeUndefined();
    memo.set("/1/pub/hot.png", "1/pub/hot.png");
    expect(memo.get("/1/pub/hot.png")).toBe("1/pub/hot.png");
  });

  it("holds no more than its entries", () => {
    const memo = new TargetMemo(100);
    for (let i = 0; i < 1000; i++) memo.set(`/1/pub/${i}.png`, `1/pub/${i}.png`);
    expect(memo.get("/1/pub/999.png")).toBe("1/pub/999.png");
    expect(memo.get("/1/pub/0.png")).toBeUndefined();
    expect(memo.chars).toBeLessThanOrEqual(100 * 2 * "/1/pub/999.png".length);
  });
});
