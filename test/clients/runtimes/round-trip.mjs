// The built client package on whichever runtime runs this file (Node, Bun, Deno): a round trip
// through a refused node and a real one. Prints one JSON line of what it saw.
import { NanoCdnClient, signPath } from "../../../clients/typescript/dist/index.js";

const env = globalThis.Deno ? globalThis.Deno.env.toObject() : globalThis.process.env;
const cdn = new NanoCdnClient({
  nodes: [env.DEAD_URL, env.NODE_URL],
  credentials: { user: env.CDN_USER, password: env.CDN_PASSWORD },
  startAt: 0,
});
const path = `runtimes/${env.RUNTIME}.txt`;
const stored = await cdn.put(path, `hello from ${env.RUNTIME}`, { namespace: "pub", deleteAfter: 3600 });
const chunks = new ReadableStream({
  start(controller) {
    for (const part of ["streamed ", "in ", "parts"]) controller.enqueue(new TextEncoder().encode(part));
    controller.close();
  },
});
const streamed = await cdn.put(`${path}.priv`, chunks, { namespace: "priv" });
const vector = JSON.parse(env.VECTOR);
console.log(
  JSON.stringify({
    name: stored.name,
    tried: stored.attempts.map((a) => a.node),
    text: await (await cdn.get(stored.name)).text(),
    priv: await (await cdn.get(streamed.name)).text(),
    head: (await cdn.head(streamed.name))?.size,
    deleted: [await cdn.delete(stored.name), await cdn.delete(streamed.name)],
    exists: await cdn.exists(stored.name),
    signed: await signPath(vector.path, vector.key, vector.expires),
  }),
);
