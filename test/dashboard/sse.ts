import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";

/** One server-sent event. */
export interface SseEvent {
  event: string;
  id: string;
  data: string;
}

/** A raw SSE client for tests: reads frames as they come; close() ends the request. */
export interface SseClient {
  status: number;
  /** The next event of a kind (skipping others), waiting up to timeoutMs. */
  next(kind?: string, timeoutMs?: number): Promise<SseEvent>;
  /** Every byte received so far. */
  readonly raw: string;
  close(): void;
}

/** Opens an event stream at url with headers (and TLS options for https). */
export function openSse(url: string, headers: Record<string, string> = {}, tls: { ca?: Buffer | string; cert?: Buffer | string; key?: Buffer | string } = {}): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const request = u.protocol === "https:" ? httpsRequest : httpRequest;
    const req = request(u, { headers: { accept: "text/event-stream", ...headers }, ...tls }, (res: IncomingMessage) => {
      let raw = "";
      let buffer = "";
      const queue: SseEvent[] = [];
      const waiters: Array<() => void> = [];
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        raw += chunk;
        buffer += chunk;
        let cut: number;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const e: SseEvent = { event: "message", id: "", data: "" };
          let any = false;
          for (const line of block.split("\n")) {
            const m = /^(event|id|data): ?(.*)$/.exec(line);
            if (!m) continue;
            any = true;
            e[m[1] as keyof SseEvent] = m[2]!;
          }
          if (any && e.data) queue.push(e);
        }
        for (const w of waiters.splice(0)) w();
      });
      resolve({
        status: res.statusCode ?? 0,
        get raw() {
          return raw;
        },
        async next(kind, timeoutMs = 30_000) {
          const deadline = Date.now() + timeoutMs;
          for (;;) {
            const i = queue.findIndex((e) => !kind || e.event === kind);
            if (i >= 0) return queue.splice(0, i + 1).at(-1)!;
            if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for an SSE event ${kind ?? ""}`);
            await new Promise<void>((r) => {
              waiters.push(r);
              setTimeout(r, 200).unref();
            });
          }
        },
        close: () => req.destroy(),
      });
    });
    req.on("error", reject);
    req.end();
  });
}
