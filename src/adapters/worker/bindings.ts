/** A whole number from a text binding; anything else is a mistake worth failing on, not NaN (no limit at all). */
export function numberOr(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value === "") return fallback;
  if (!/^\d+$/.test(value.trim())) throw new Error(`${name} must be a whole number, not ${JSON.stringify(value)}`);
  return Number(value);
}
