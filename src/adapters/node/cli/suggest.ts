import { closest, distance } from "fastest-levenshtein";

/** The closest of `names` to `wrong`, when it is close enough to be what was meant. */
export function suggest(wrong: string, names: readonly string[]): string | undefined {
  if (names.length === 0) return undefined;
  const best = closest(wrong, names as string[]);
  return distance(wrong, best) <= Math.max(2, Math.floor(best.length / 3)) ? best : undefined;
}
