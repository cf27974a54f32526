import { InvalidPathError } from "../storage/errors.ts";
import { checkSegment, MAX_KEY_BYTES } from "../storage/key.ts";

export const NAMESPACES = ["pub", "priv"] as const;
export type Namespace = (typeof NAMESPACES)[number];

/** Folder of `files/` that holds the files that predate node numbers. */
export const LEGACY = "legacy";

/** First path segments the API uses itself; no node may be named so. */
export const RESERVED_SEGMENTS = ["upload", "check", "status", "metrics", LEGACY, ...NAMESPACES] as const;

/** How a node's id is spelled. */
export const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;

/**
 * Whether a first path segment could name a node: one of this cluster, or
 * one taken out of it, whose files the peers' replicas still hold.
 */
export function isNodeId(segment: string): boolean {
  return NODE_ID.test(segment) && !(RESERVED_SEGMENTS as readonly string[]).includes(segment);
}

/** A stored file as the URL names it. `owner` is undefined for legacy files. */
export interface FileAddress {
  owner: string | undefined;
  namespace: Namespace;
  /** The decoded path below the namespace, e.g. `a/b.pdf`. */
  path: string;
  /** The store key: `<owner>/<ns>/<path>` or `legacy/<ns>/<path>`. */
  key: string;
}

export type Target =
  | { kind: "upload"; namespace: Namespace; path: string }
  | { kind: "check" }
  | { kind: "status" }
  | { kind: "metrics" }
  | { kind: "file"; file: FileAddress };

const encoder = new TextEncoder();

function isNamespace(segment: string | undefined): segment is Namespace {
  return (NAMESPACES as readonly string[]).includes(segment ?? "");
}

/** The path of a request target, without its query. */
export function pathOf(rawTarget: string): string {
  const query = rawTarget.search(/[?#]/);
  return query === -1 ? rawTarget : rawTarget.slice(0, query);
}

/**
 * Splits the request target exactly as the client sent it (before any URL
 * normalisation) into decoded segments, refusing anything that could be read
 * as another path: dot segments, encoded or not, encoded slashes, backslashes,
 * control characters, empty segments and over-long names.
 */
export function decodeSegments(rawTarget: string): string[] {
  const rawPath = pathOf(rawTarget);
  if (!rawPath.startsWith("/")) throw new InvalidPathError("the path must start with '/'");
  if (rawPath === "/") return [];
  const segments = rawPath
    .slice(1)
    .split("/")
    .map((raw) => {
      let segment: string;
      try {
        segment = decodeURIComponent(raw);
      } catch {
        throw new InvalidPathError("malformed percent-encoding in the path");
      }
      checkSegment(segment);
      return segment;
    });
  if (encoder.encode(segments.join("/")).length > MAX_KEY_BYTES) {
    throw new InvalidPathError(`path longer than ${MAX_KEY_BYTES} bytes`);
  }
  return segments;
}

function fileAddress(owner: string | undefined, namespace: string | undefined, rest: string[]): FileAddress {
  if (!isNamespace(namespace)) {
    throw new InvalidPathError(`unknown namespace '${namespace ?? ""}'; use one of ${NAMESPACES.join(", ")}`);
  }
  if (rest.length === 0) throw new InvalidPathError("the path names no file");
  const path = rest.join("/");
  return { owner, namespace, path, key: `${owner ?? LEGACY}/${namespace}/${path}` };
}

/** Classifies a request path. `isNode` tells whether a first segment names a node. */
export function parseTarget(rawTarget: string, isNode: (id: string) => boolean): Target {
  const segments = decodeSegments(rawTarget.replace(/^(\/check|\/status)\/(?=$|[?#])/, "$1"));
  const [first, second, ...rest] = segments;
  if (first === undefined) throw new InvalidPathError("the path names no file");
  if (first === "check" && second === undefined) return { kind: "check" };
  if (first === "status" && second === undefined) return { kind: "status" };
  if (first === "metrics" && second === undefined) return { kind: "metrics" };
  if (first === "upload") {
    const file = fileAddress(undefined, second, rest);
    return { kind: "upload", namespace: file.namespace, path: file.path };
  }
  if (isNamespace(first)) return { kind: "file", file: fileAddress(undefined, first, segments.slice(1)) };
  if (isNode(first)) return { kind: "file", file: fileAddress(first, second, rest) };
  throw new InvalidPathError(`'${first}' is neither a node of this cluster nor a namespace (${NAMESPACES.join(", ")})`);
}

/** The file a store key names: `<owner>/<ns>/<path>`, or `legacy/<ns>/<path>` without an owner. */
export function fileOfKey(key: string): Pick<FileAddress, "owner" | "namespace" | "path"> {
  const [first, namespace, ...path] = key.split("/");
  return { owner: first === LEGACY ? undefined : first, namespace: namespace as Namespace, path: path.join("/") };
}

// encodeURIComponent also escapes characters that RFC 3986 allows in a path segment.
const SEGMENT_SAFE = /%(3A|40|21|24|26|27|28|29|2A|2B|2C|3B|3D)/gi;

/** The URL path of a stored file, percent-encoded: what `Location` carries. */
export function urlPathOf(file: Pick<FileAddress, "owner" | "namespace" | "path">): string {
  const segments = [...(file.owner === undefined ? [] : [file.owner]), file.namespace, ...file.path.split("/")];
  return `/${segments.map((s) => encodeURIComponent(s).replace(SEGMENT_SAFE, decodeURIComponent)).join("/")}`;
}
