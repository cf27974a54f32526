/**
 * Retries `check` until it passes or `timeoutMs` is over, then throws its
 * last failure: for conditions that become true soon (a file replicated, a
 * peer marked down) without asserting how soon.
 */
export async function eventually(check: () => Promise<void>, timeoutMs = 15_000, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }
}
