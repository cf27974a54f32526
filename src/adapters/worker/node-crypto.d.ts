// The part of node:crypto (nodejs_compat) that code shared with the nodes
// uses here: the hashes of SHA crypt in htpasswd lines.
declare module "node:crypto" {
  interface Hash {
    update(data: Uint8Array | string): Hash;
    digest(): Uint8Array;
  }
  export function createHash(algorithm: string): Hash;
}
