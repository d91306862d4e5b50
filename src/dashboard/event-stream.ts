import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { toJsonString } from "@bufbuild/protobuf";
import { EventSchema, type Event } from "../../gen/baton/v1/control_pb.js";
import { BatonError, Code, invalidArgument } from "../errors.js";
import type { EventLog } from "../events/index.js";
import type { Logger } from "../logging.js";
import { redact } from "../rpc/index.js";
import { SECURITY_HEADERS } from "./http-answers.js";

/** What an event stream sends besides the event log's events. */
export interface EventStreamSources {
  events: EventLog;
  /** The whole state, sent first (and again when a resume is impossible); a JSON text. */
  snapshot(signal: AbortSignal): Promise<string>;
  /** The figures that change without events (in-flight, heartbeats, utilization, metrics), sent every pulseMs; a JSON text. */
  pulse(signal: AbortSignal): Promise<string>;
  pulseMs: number;
  logger: Logger;
}

// Cursors start again at 1 in a new process: an id names its process, so a browser that
// reconnects to a restarted coordinator re-reads state instead of resuming a foreign log.
const EPOCH = randomBytes(6).toString("hex");

/** The cursor to resume after, from Last-Event-ID ("<epoch>-<cursor>"); 0n when there is none or it is of another process. */
export function resumeCursor(lastEventId: string | undefined): bigint {
  if (!lastEventId) return 0n;
  const m = /^([0-9a-f]{12})-(\d{1,20})$/.exec(lastEventId);
  if (!m) throw invalidArgument(`Last-Event-ID ${JSON.stringify(lastEventId.slice(0, 64))} is not a dashboard event id (<epoch>-<cursor>)`);
  return m[1] === EPOCH ? BigInt(m[2]!) : 0n;
}

function frame(fields: { event?: string; id?: string; data: string }): string {
  // JSON text has no raw newline, so one data line holds it.
  return `${fields.event ? `event: ${fields.event}\n` : ""}${fields.id ? `id: ${fields.id}\n` : ""}data: ${fields.data}\n\n`;
}

function waitDrain(res: ServerResponse, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    res.on("drain", done);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * Server-sent events: a snapshot, then every event of the log (each with its cursor as id,
 * redacted like a gRPC answer), and a pulse every pulseMs. A browser that reconnects sends
 * Last-Event-ID and resumes from the retained events; one too far behind (or of another
 * process) gets a fresh snapshot. A stream that falls behind is ended, not buffered: the
 * browser reconnects and resumes. Pulses are skipped while the socket is backed up.
 */
export async function streamEvents(req: IncomingMessage, res: ServerResponse, sources: EventStreamSources, signal: AbortSignal): Promise<void> {
  const header = req.headers["last-event-id"];
  const after = resumeCursor(typeof header === "string" ? header : undefined);
  const { events, logger } = sources;
  let watch: AsyncIterable<Event>;
  let needSnapshot = after === 0n;
  let startCursor = after;
  try {
    watch = events.watch(["#"], after, signal);
  } catch (err) {
    const e = BatonError.from(err);
    // Too old (OUT_OF_RANGE) or ahead of this log: start again from a snapshot.
    if (e.code !== Code.OUT_OF_RANGE && e.code !== Code.INVALID_ARGUMENT) throw err;
    needSnapshot = true;
    watch = events.watch(["#"], 0n, signal);
  }
  // The watcher is registered before the snapshot is read: nothing falls between them.
  if (needSnapshot) startCursor = events.last;
  res.writeHead(200, { ...SECURITY_HEADERS, "content-type": "text/event-stream; charset=utf-8", connection: "keep-alive", "x-accel-buffering": "no" });
  res.write("retry: 2000\n\n");
  const write = async (text: string) => {
    if (!res.write(text)) await waitDrain(res, signal);
  };
  const timer = setInterval(() => {
    if (res.writableNeedDrain) return;
    sources.pulse(signal).then(
      (data) => void (signal.aborted || res.write(frame({ event: "pulse", data }))),
      (err: unknown) => logger.warn({ err }, "dashboard pulse failed"),
    );
  }, sources.pulseMs);
  timer.unref();
  try {
    if (needSnapshot) await write(frame({ event: "snapshot", id: `${EPOCH}-${startCursor}`, data: await sources.snapshot(signal) }));
    for await (const event of watch) {
      await write(frame({ event: "change", id: `${EPOCH}-${event.cursor}`, data: toJsonString(EventSchema, redact(EventSchema, event)) }));
    }
  } catch (err) {
    // A watcher cut off as too slow, or the log closing at shutdown: the browser reconnects and resumes.
    if (!signal.aborted) logger.debug({ err: (err as Error).message }, "dashboard event stream ended");
  } finally {
    clearInterval(timer);
    res.end();
  }
}
