// Test helpers: a plugin client over a unix socket that speaks as dockerd does (POST, no
// Content-Type, JSON bodies from Go's encoder ending in "\n", chunked ApplyDiff bodies).

import { request } from "node:http";
import { Readable } from "node:stream";

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** Set when the connection broke before the body was complete. */
  error?: Error;
}

/** POSTs `body` to `path` on the socket; a string/object body is sent as JSON, a Readable chunked. */
export function post(socket: string, path: string, body?: unknown): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path, method: "POST", headers: { Accept: "application/vnd.docker.plugins.v1.2+json" } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", (error) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), error }));
      res.on("aborted", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), error: new Error("aborted") }));
    });
    req.on("error", reject);
    if (body instanceof Readable) {
      body.pipe(req);
    } else {
      req.end(body === undefined ? "" : `${JSON.stringify(body)}\n`);
    }
  });
}

export const json = (r: Reply): unknown => JSON.parse(r.body.toString("utf8"));
