import type { ServerResponse } from "node:http";
import { BatonError, Code } from "../errors.js";
import type { Logger } from "../logging.js";

// gRPC codes by meaning to the HTTP statuses that say the same (as grpc-gateway maps them).
const HTTP_STATUS: Partial<Record<Code, number>> = {
  [Code.INVALID_ARGUMENT]: 400,
  [Code.OUT_OF_RANGE]: 400,
  [Code.FAILED_PRECONDITION]: 409,
  [Code.ABORTED]: 409,
  [Code.ALREADY_EXISTS]: 409,
  [Code.NOT_FOUND]: 404,
  [Code.PERMISSION_DENIED]: 403,
  [Code.UNAUTHENTICATED]: 401,
  [Code.RESOURCE_EXHAUSTED]: 429,
  [Code.UNAVAILABLE]: 503,
  [Code.DEADLINE_EXCEEDED]: 504,
  [Code.CANCELLED]: 499,
  [Code.UNIMPLEMENTED]: 501,
};

/** Headers every dashboard answer carries: nothing cached, nothing framed or sniffed, nothing loaded from elsewhere. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
});

/** Answers with a JSON body. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...SECURITY_HEADERS, "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** Answers with an error as `{ code, message }`, its gRPC code mapped to an HTTP status; an unexpected error is logged and answered "internal error". */
export function sendError(res: ServerResponse, err: unknown, logger: Logger): void {
  const error = BatonError.from(err);
  const status = HTTP_STATUS[error.code] ?? 500;
  if (status === 500) logger.error({ err }, "dashboard request failed");
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, status, { code: Code[error.code], message: status === 500 ? "internal error" : error.message });
}
