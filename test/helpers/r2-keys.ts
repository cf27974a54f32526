/** The part of an R2 bucket (the binding, or Miniflare's proxy of it) that listing needs. */
interface Listable {
  list(options: { cursor?: string }): Promise<{ objects: { key: string }[]; truncated: boolean; cursor?: string }>;
}

/** Every key of a bucket, all pages. Imports nothing, so tests inside workerd use it too. */
export async function listKeys(bucket: Listable): Promise<string[]> {
  const keys: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await bucket.list({ cursor });
    keys.push(...page.objects.map((o) => o.key));
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return keys.sort();
}
