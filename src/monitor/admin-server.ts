import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer, type ServerOptions as HttpsServerOptions } from "node:https";
import type { Registry } from "prom-client";
import type { Logger } from "../logging.js";

/** The admin HTTP endpoint: GET /metrics (Prometheus text format), GET /healthz (live) and GET /readyz (ready). */
export interface AdminServer {
  /** The bound port. */
  port: number;
  close(): Promise<void>;
}

/** What else the admin port serves, and how. */
export interface AdminServerOptions {
  /** Routes of other modules (the dashboard), asked first: true when they answered the request. */
  routes?: (req: IncomingMessage, res: ServerResponse) => boolean;
  /** Serve HTTPS with these options (the dashboard's mutual TLS) instead of HTTP. */
  tls?: HttpsServerOptions;
  /** Why the process should be sent no traffic now ("" when it is ready): /readyz answers 503 with it. Default always ready. */
  notReady?: () => string;
}

/** Listens on host:port (port 0 picks one) and serves the registry's metrics. */
export async function startAdminServer(listen: { host: string; port: number }, registry: Registry, logger: Logger, options: AdminServerOptions = {}): Promise<AdminServer> {
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    if (options.routes?.(req, res)) return;
    if (req.method === "GET" && req.url === "/metrics") {
      registry.metrics().then(
        (body) => {
          res.writeHead(200, { "content-type": registry.contentType });
          res.end(body);
        },
        (err: unknown) => {
          logger.error({ err }, "metrics collection failed");
          res.writeHead(500).end();
        },
      );
    } else if (req.method === "GET" && req.url === "/healthz") {
      // Live: the process answers. Whether it should get traffic is /readyz's question.
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (req.method === "GET" && req.url === "/readyz") {
      const why = options.notReady?.() ?? "";
      res.writeHead(why ? 503 : 200, { "content-type": "text/plain" }).end(why ? `not ready: ${why}\n` : "ready\n");
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics, /healthz or /readyz\n");
    }
  };
  const server = options.tls ? createHttpsServer(options.tls, handler) : createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listen.port, listen.host, resolve);
  });
  const port = (server.address() as { port: number }).port;
  logger.info({ admin: `${listen.host}:${port}` }, "admin endpoint serving /metrics");
  return {
    port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
