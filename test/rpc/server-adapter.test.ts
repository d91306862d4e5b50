import { create } from "@bufbuild/protobuf";
import { Server } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { Control, GetTaskResponseSchema, TaskSchema } from "../../gen/baton/v1/control_pb.js";
import { Health, HealthCheckResponse_ServingStatus, HealthCheckResponseSchema } from "../../gen/grpc/health/v1/health_pb.js";
import { BatonError, Code, notFound } from "../../src/errors.js";
import { createLogger, type Logger } from "../../src/logging.js";
import { adaptService, createChannel, createClient, serverCredentials, type AdaptedService, type HandlerContext } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { LogCapture } from "../helpers/server.js";

const fx = useFixture();

const SERVING = create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING });
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A real pino logger writing JSON lines to a capture, counting the child loggers made from it. */
function capturedLogger(): { logger: Logger; logs: LogCapture; children: () => number } {
  const logs = new LogCapture();
  const logger = createLogger({ level: "debug", destination: logs });
  let children = 0;
  const child = logger.child.bind(logger);
  logger.child = ((...args: Parameters<Logger["child"]>) => {
    children++;
    return child(...args);
  }) as Logger["child"];
  return { logger, logs, children: () => children };
}

/** Serves the adapted services on 127.0.0.1:0 over mutual TLS, stopped after the test. */
async function serve(...services: AdaptedService[]): Promise<string> {
  const server = new Server();
  for (const s of services) server.addService(s.definition, s.implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", serverCredentials({ ca: fx.pki.ca.certPem, cert: fx.pki.server.certPem, key: fx.pki.server.keyPem }), (err, p) => (err ? reject(err) : resolve(p))),
  );
  fx.defer(() => server.forceShutdown());
  return `localhost:${port}`;
}

async function healthClient(address: string) {
  const channel = createChannel(address, await fx.pki.credentials("operator", "op"));
  fx.defer(() => channel.close());
  return createClient(Health, channel);
}

describe("the server adapter's per-call context", () => {
  it("ctx.logger is a child carrying method and correlation_id, made once and only for a call that uses it", async () => {
    const { logger, logs, children } = capturedLogger();
    const adapted = adaptService(
      Health,
      {
        async check(request, ctx) {
          if (request.service === "quiet") return SERVING;
          if (request.service === "missing") throw notFound("no such service");
          ctx.logger.info({ step: 1 }, "checking");
          ctx.logger.info({ step: 2 }, "checked");
          return SERVING;
        },
      },
      { logger },
    );
    const client = await healthClient(await serve(adapted));

    await client.check({ service: "quiet" }, { correlationId: "quiet-1" });
    expect(children()).toBe(0);
    expect(logs.lines).toEqual([]);

    await client.check({ service: "loud" }, { correlationId: "corr-42" });
    expect(children()).toBe(1);
    expect(logs.lines.map((l) => [l.msg, l.step, l.method, l.correlation_id])).toEqual([
      ["checking", 1, "/grpc.health.v1.Health/Check", "corr-42"],
      ["checked", 2, "/grpc.health.v1.Health/Check", "corr-42"],
    ]);

    // No header: the call makes up its correlation id.
    await client.check({ service: "loud" });
    expect(children()).toBe(2);
    const made = logs.lines.slice(2).map((l) => l.correlation_id);
    expect(made).toHaveLength(2);
    expect(made[0]).toMatch(UUID);
    expect(made[1]).toBe(made[0]);

    // A refusal is logged through the call's child too.
    await expect(client.check({ service: "missing" }, { correlationId: "corr-404" })).rejects.toMatchObject({ code: Code.NOT_FOUND, details: "no such service" });
    expect(logs.lines.at(-1)).toMatchObject({ level: "debug", msg: "call refused", code: "NOT_FOUND", reason: "no such service", method: "/grpc.health.v1.Health/Check", correlation_id: "corr-404" });
  });

  it("ctx.signal is aborted with CANCELLED \"the call ended\" once a unary call or a stream has answered", async () => {
    const { logger } = capturedLogger();
    const signals: AbortSignal[] = [];
    const adapted = adaptService(
      Health,
      {
        async check(_request, ctx: HandlerContext) {
          signals.push(ctx.signal);
          expect(ctx.signal.aborted).toBe(false);
          return SERVING;
        },
        async *watch(_request, ctx: HandlerContext) {
          signals.push(ctx.signal);
          yield SERVING;
        },
      },
      { logger },
    );
    const client = await healthClient(await serve(adapted));
    await client.check({ service: "" });
    await client.check({ service: "" });
    const seen = [];
    for await (const answer of client.watch({ service: "" })) seen.push(answer.status);
    expect(seen).toEqual([HealthCheckResponse_ServingStatus.SERVING]);

    expect(signals).toHaveLength(3);
    for (const signal of signals) {
      expect(signal.aborted).toBe(true);
      expect(signal.reason).toBeInstanceOf(BatonError);
      expect(signal.reason).toMatchObject({ code: Code.CANCELLED, message: "the call ended" });
    }
  });

  it("an answer leaves with its debug_redact fields cleared, the handler's own copy untouched", async () => {
    const { logger } = capturedLogger();
    const held = create(TaskSchema, { spec: { taskId: "t1", input: { a: 1 }, sensitiveInput: { apiKey: "s3cret" } }, submitter: "op" });
    const adapted = adaptService(Control, { getTask: async () => create(GetTaskResponseSchema, { task: held }) }, { logger });
    const channel = createChannel(await serve(adapted), await fx.pki.credentials("operator", "op"));
    fx.defer(() => channel.close());
    const { task } = await createClient(Control, channel).getTask({ taskId: "t1" });
    expect(task?.spec?.taskId).toBe("t1");
    expect(task?.spec?.input).toEqual({ a: 1 });
    expect(task?.submitter).toBe("op");
    expect(task?.spec?.sensitiveInput).toBeUndefined();
    expect(held.spec?.sensitiveInput).toEqual({ apiKey: "s3cret" });
  });
});
