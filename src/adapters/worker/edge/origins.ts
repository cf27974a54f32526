import { RESERVED_SEGMENTS } from "../../../handlers/paths.ts";

/** An origin node behind the edge: its id (the first segment of its names) and base URL. */
export interface Origin {
  id: string;
  url: string;
}

/**
 * The ORIGINS binding: `id=URL` pairs separated by commas or spaces, as in
 * `1=https://cdn1.example.com:8080,2=https://cdn2.example.com:8080`.
 * Anything else stops the edge with a message saying which pair is wrong.
 */
export function parseOrigins(text: string | undefined): Origin[] {
  const pairs = (text ?? "").split(/[\s,]+/).filter((pair) => pair !== "");
  if (pairs.length === 0) throw new Error("ORIGINS must list the origin nodes, e.g. 1=https://cdn1.example.com:8080,2=https://cdn2.example.com:8080");
  const origins = pairs.map((pair) => {
    const equals = pair.indexOf("=");
    const id = pair.slice(0, equals);
    const url = pair.slice(equals + 1);
    if (equals <= 0 || !/^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/.test(id) || (RESERVED_SEGMENTS as readonly string[]).includes(id)) {
      throw new Error(`ORIGINS: ${JSON.stringify(pair)} is not id=URL with a node id such as 1`);
    }
    if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) {
      throw new Error(`ORIGINS: node ${id} needs an http:// or https:// URL, not ${JSON.stringify(url)}`);
    }
    return { id, url: url.replace(/\/+$/, "") };
  });
  const ids = origins.map((o) => o.id);
  const twice = ids.find((id, i) => ids.indexOf(id) !== i);
  if (twice !== undefined) throw new Error(`ORIGINS names node ${twice} twice`);
  return origins;
}
