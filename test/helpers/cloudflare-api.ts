import { createServer } from "node:http";
import { listenOnLoopback } from "./loopback.ts";

/** A purge request as Cloudflare's API would have received it. */
export interface PurgeRequest {
  method: string;
  url: string;
  authorization: string;
  body: { tags?: string[] };
}

export interface Answer {
  status: number;
  body: object;
  headers?: Record<string, string>;
}

export const PURGED: Answer = { status: 200, body: { success: true, errors: [], result: { id: "zone-1" } } };
export const REFUSED: Answer = { status: 403, body: { success: false, errors: [{ code: 10000, message: "Authentication error" }] } };
export const FAILING: Answer = { status: 502, body: { success: false, errors: [] } };
export const SLOW_DOWN: Answer = { status: 429, body: { success: false, errors: [{ code: 971, message: "Please wait" }] }, headers: { "Retry-After": "1" } };

/** An answer as an in-process fetch returns it. */
export const responseTo = (answer: Answer) => Response.json(answer.body, { status: answer.status, ...(answer.headers && { headers: answer.headers }) });

/**
 * A stand-in for Cloudflare's API on a loopback port (the real one cannot be
 * reached from here): records purges and gives the answers in turn, the
 * last one from then on.
 */
export async function startCloudflareApi(...answers: Answer[]) {
  const purges: PurgeRequest[] = [];
  const server = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk: Buffer) => (body += chunk.toString()));
    request.on("end", () => {
      purges.push({ method: request.method!, url: request.url!, authorization: request.headers.authorization ?? "", body: JSON.parse(body) });
      const answer = answers[Math.min(purges.length, answers.length) - 1]!;
      response.writeHead(answer.status, { "Content-Type": "application/json", ...answer.headers }).end(JSON.stringify(answer.body));
    });
  });
  const { url, close } = await listenOnLoopback(server);
  return {
    /** What a configuration takes as Cloudflare's API. */
    url: `${url}/client/v4`,
    purges,
    close,
  };
}
