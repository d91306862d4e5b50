import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";
import type { Logger } from "../logging.js";

/** The admin HTTP endpoint: GET /metrics (Prometheus text format) and GET /healthz. */
export interface AdminServer {
  /** The bound port. */
  port: number;
  close(): Promise<void>;
}

/** Listens on host:port (port 0 picks one) and serves the registry's metrics. */
export async function startAdminServer(listen: { host: string; port: number }, registry: Registry, logger: Logger): Promise<AdminServer> {
  const server: Server = createServer((req, res) => {
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
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics or /healthz\n");
    }
  });
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
