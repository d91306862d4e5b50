import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Client, connectivityState, Metadata, type ClientReadableStream, type ServiceError } from "@grpc/grpc-js";
import { Control } from "../../gen/baton/v1/control_pb.js";
import { buildConfig, ConfigError } from "../../src/config.js";
import { Code } from "../../src/errors.js";
import { createClient } from "../../src/rpc/index.js";
import { makePki, type TestPki } from "../helpers/pki.js";
import { startServer, waitFor, type TestServer } from "../helpers/server.js";

// Transport hardening, against real servers: decoder recursion, idle and age limits,
// concurrent stream limits, and the configuration that sets them.

let pki: TestPki;
const servers: TestServer[] = [];
const clients: Client[] = [];

beforeAll(async () => {
  pki = await makePki();
});
afterAll(() => pki.cleanup());
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) await s.stop();
});

async function serve(transport: Record<string, number> = {}): Promise<TestServer> {
  const srv = await startServer(pki, { transport } as never);
  servers.push(srv);
  return srv;
}

async function rawClient(srv: TestServer, name = "ops"): Promise<Client> {
  const c = new Client(srv.address, await pki.credentials("operator", name));
  clients.push(c);
  return c;
}

const same = (b: Buffer) => b;

function unary(client: Client, path: string, bytes: Buffer, deadlineMs = 5000): Promise<ServiceError | undefined> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(path, same, same, bytes, new Metadata(), { deadline: Date.now() + deadlineMs }, (err) => resolve(err ?? undefined));
  });
}

const listAgents = (client: Client, deadlineMs = 5000) => unary(client, "/baton.v1.Control/ListAgents", Buffer.alloc(0), deadlineMs);

/** A Control.WatchEvents call (from now, all topics): a stream that stays open until ended. */
interface Watch {
  call: ClientReadableStream<Buffer>;
  data: Buffer[];
  /** Resolves with the call's error (or undefined on a clean end) and when it happened. */
  ended: Promise<{ err: ServiceError | undefined; at: number }>;
  done: boolean;
}

function watch(client: Client): Watch {
  const call = client.makeServerStreamRequest("/baton.v1.Control/WatchEvents", same, same, Buffer.alloc(0), new Metadata(), {});
  const w: Watch = {
    call,
    data: [],
    done: false,
    ended: new Promise((resolve) => {
      call.on("error", (err: ServiceError) => {
        w.done = true;
        resolve({ err, at: Date.now() });
      });
      call.on("end", () => {
        w.done = true;
        resolve({ err: undefined, at: Date.now() });
      });
    }),
  };
  call.on("data", (chunk: Buffer) => w.data.push(chunk));
  return w;
}

/** Connects the channel and resolves once it is READY. */
async function ready(client: Client, timeoutMs = 5000): Promise<number> {
  await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve())));
  return Date.now();
}

/** Records every connectivity state a channel passes through. */
function trackStates(client: Client): { states: connectivityState[]; stop: () => void } {
  const channel = client.getChannel();
  const states: connectivityState[] = [channel.getConnectivityState(false)];
  let stopped = false;
  const next = (current: connectivityState) => {
    channel.watchConnectivityState(current, Infinity, () => {
      if (stopped) return;
      const now = channel.getConnectivityState(false);
      states.push(now);
      next(now);
    });
  };
  next(states[0]!);
  return { states, stop: () => void (stopped = true) };
}

// ---- protobuf wire encoding, by hand, so the bytes can be anything ----

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

/** A length-delimited field. */
function ld(fieldNo: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([...varint((fieldNo << 3) | 2), ...varint(body.length)]), body]);
}

const str = (fieldNo: number, s: string) => ld(fieldNo, Buffer.from(s, "utf8"));

/**
 * A SubmitTaskRequest whose task.input is `levels` Structs nested through Values:
 * Struct{fields{"k": Value{struct_value: Struct{...}}}}. protobuf-es counts one level
 * per message: SubmitTaskRequest 1, TaskSpec 2, then 2 per Struct (Struct + Value).
 */
function nestedSubmit(taskId: string, levels: number): Buffer {
  // Innermost: an empty Struct.
  let struct: Buffer = Buffer.alloc(0);
  for (let i = 1; i < levels; i++) {
    const value = ld(5, struct); // Value.struct_value = 5
    const entry = Buffer.concat([str(1, "k"), ld(2, value)]); // map entry: key = 1, value = 2
    struct = ld(1, entry); // Struct.fields = 1
  }
  const spec = Buffer.concat([str(1, taskId), ld(9, struct)]); // TaskSpec.task_id = 1, input = 9
  return ld(1, spec); // SubmitTaskRequest.task = 1
}

/** Message depth protobuf-es reaches decoding nestedSubmit(levels). */
const depthOf = (levels: number) => 2 + 2 * levels - 1;

/** protobuf-es's default fromBinary recursionLimit (from-binary.js makeReadContext). */
const RECURSION_LIMIT = 100;

describe("decoder recursion limit", () => {
  it("a Struct nested past the limit is INVALID_ARGUMENT and the server keeps serving", async () => {
    const srv = await serve();
    const client = await rawClient(srv);
    const levels = 60;
    expect(depthOf(levels)).toBeGreaterThan(RECURSION_LIMIT);
    const err = await unary(client, "/baton.v1.Control/SubmitTask", nestedSubmit("deep", levels));
    expect(err?.code).toBe(Code.INVALID_ARGUMENT);
    expect(err?.details).toMatch(/^malformed baton\.v1\.SubmitTaskRequest: .*maximum recursion depth of 100 reached/);
    // Still serving, on the same connection and from a new one.
    expect(await listAgents(client)).toBeUndefined();
    expect(await listAgents(await rawClient(srv, "ops2"))).toBeUndefined();
    // Nothing was accepted.
    const control = createClient(Control, client);
    await expect(control.getTask({ taskId: "deep" })).rejects.toMatchObject({ code: Code.NOT_FOUND });
  });

  it("nesting far past the limit (10k levels) is refused the same way, without a stack overflow", async () => {
    const srv = await serve();
    const client = await rawClient(srv);
    const err = await unary(client, "/baton.v1.Control/SubmitTask", nestedSubmit("deeper", 10_000));
    expect(err?.code).toBe(Code.INVALID_ARGUMENT);
    expect(err?.details).toMatch(/maximum recursion depth of 100 reached/);
    expect(await listAgents(client)).toBeUndefined();
  });

  it("nesting just inside the limit is accepted", async () => {
    const srv = await serve();
    const client = await rawClient(srv);
    const levels = 49;
    expect(depthOf(levels)).toBeLessThanOrEqual(RECURSION_LIMIT);
    const err = await unary(client, "/baton.v1.Control/SubmitTask", nestedSubmit("inside", levels));
    expect(err).toBeUndefined();
    const control = createClient(Control, client);
    await expect(control.getTask({ taskId: "inside" })).resolves.toBeDefined();
  });

  it("deeply nested groups in an unknown field are refused by the skipper's limit", async () => {
    const srv = await serve();
    const client = await rawClient(srv);
    // Field 15, wire type 3 (start group) x 1000, then the matching end groups (type 4).
    const start = varint((15 << 3) | 3);
    const end = varint((15 << 3) | 4);
    const bytes = Buffer.from([...Array.from({ length: 1000 }, () => start).flat(), ...Array.from({ length: 1000 }, () => end).flat()]);
    const err = await unary(client, "/baton.v1.Control/GetAgent", bytes);
    expect(err?.code).toBe(Code.INVALID_ARGUMENT);
    expect(err?.details).toMatch(/^malformed baton\.v1\.GetAgentRequest: .*maximum recursion depth reached/);
    expect(await listAgents(client)).toBeUndefined();
  });
});

describe("connection limits", () => {
  it("maxConnectionIdleMs closes a connection with no calls; the next call reconnects", async () => {
    const srv = await serve({ maxConnectionIdleMs: 300 });
    const client = await rawClient(srv);
    const track = trackStates(client);
    const readyAt = await ready(client);
    const channel = client.getChannel();
    expect(channel.getConnectivityState(false)).toBe(connectivityState.READY);
    await waitFor(() => channel.getConnectivityState(false) === connectivityState.IDLE, 3000, "the idle connection to close");
    const idleAfter = Date.now() - readyAt;
    // The server's idle timer (started when the session opened), not something sooner.
    expect(idleAfter).toBeGreaterThanOrEqual(200);
    expect(idleAfter).toBeLessThan(2000);
    // A new call reconnects and succeeds.
    expect(await listAgents(client)).toBeUndefined();
    track.stop();
    expect(track.states).toEqual(expect.arrayContaining([connectivityState.READY, connectivityState.IDLE]));
    expect(track.states.lastIndexOf(connectivityState.READY)).toBeGreaterThan(track.states.indexOf(connectivityState.IDLE));
  });

  it("maxConnectionIdleMs does not close a connection while a stream is open", async () => {
    const srv = await serve({ maxConnectionIdleMs: 300 });
    const client = await rawClient(srv);
    await ready(client);
    const w = watch(client);
    await new Promise((r) => setTimeout(r, 1000));
    expect(w.done).toBe(false);
    expect(client.getChannel().getConnectivityState(false)).toBe(connectivityState.READY);
    w.call.cancel();
    expect((await w.ended).err?.code).toBe(Code.CANCELLED);
  });

  it("maxConnectionAgeMs ends an open stream after age + grace; a later call reconnects", async () => {
    const age = 500;
    const grace = 300;
    const srv = await serve({ maxConnectionAgeMs: age, maxConnectionAgeGraceMs: grace });
    const client = await rawClient(srv);
    const track = trackStates(client);
    const readyAt = await ready(client);
    const w = watch(client);
    // Past the age (+10% jitter): the server has sent GOAWAY, but the stream has its grace.
    await new Promise((r) => setTimeout(r, age * 1.1 + 50 - (Date.now() - readyAt)));
    expect(w.done).toBe(false);
    // A call started now goes to a new connection and succeeds.
    expect(await listAgents(client)).toBeUndefined();
    const { err, at } = await w.ended;
    const lived = at - readyAt;
    // grpc-js destroys the session when the grace runs out; the stream sees the connection drop.
    expect(err?.code).toBe(Code.UNAVAILABLE);
    expect(err?.details).toMatch(/GOAWAY|Connection dropped|closed/i);
    expect(lived).toBeGreaterThanOrEqual(age * 0.9 + grace - 100);
    expect(lived).toBeLessThan(age * 1.1 + grace + 1500);
    track.stop();
    // READY, then the GOAWAY took it out of READY, then READY again for the new connection.
    const firstReady = track.states.indexOf(connectivityState.READY);
    const left = track.states.findIndex((s, i) => i > firstReady && s !== connectivityState.READY);
    expect(left).toBeGreaterThan(firstReady);
    expect(track.states.slice(left)).toContain(connectivityState.READY);
  });

  it("maxConcurrentStreams 2: a third call on the connection waits for a free stream, then succeeds", async () => {
    const srv = await serve({ maxConcurrentStreams: 2 });
    const client = await rawClient(srv);
    await ready(client);
    const w1 = watch(client);
    const w2 = watch(client);
    // Both streams are open on the server before the third call is made.
    await new Promise((r) => setTimeout(r, 300));
    let third: ServiceError | undefined | "pending" = "pending";
    const thirdStarted = Date.now();
    const thirdDone = listAgents(client, 10_000).then((err) => {
      third = err;
      return Date.now();
    });
    await new Promise((r) => setTimeout(r, 800));
    // Queued (not failed): HTTP/2 holds the stream until the peer's limit allows it.
    expect(third).toBe("pending");
    expect(w1.done).toBe(false);
    expect(w2.done).toBe(false);
    // Another connection is not limited by this one's streams.
    const other = await rawClient(srv, "ops2");
    expect(await listAgents(other)).toBeUndefined();
    // Freeing a stream lets the queued call through.
    w1.call.cancel();
    expect((await w1.ended).err?.code).toBe(Code.CANCELLED);
    const thirdAt = await thirdDone;
    expect(third).toBeUndefined();
    expect(thirdAt - thirdStarted).toBeGreaterThanOrEqual(800);
    // The second stream is unaffected: it still receives events.
    const control = createClient(Control, other);
    await control.submitTask({ task: { taskId: "limits-1" } });
    await waitFor(() => w2.data.length > 0, 3000, "an event on the second stream");
    expect(w2.done).toBe(false);
    w2.call.cancel();
    await w2.ended;
  });
});

describe("transport configuration", () => {
  const base = { listen: "127.0.0.1:0", store: { kind: "memory" as const }, adminListen: "" };
  const build = (transport: Record<string, unknown>) => () => buildConfig(base, { transport } as never);

  it("accepts the defaults and small test limits", () => {
    expect(() => build({})()).not.toThrow();
    expect(() => build({ maxConnectionIdleMs: 300, maxConnectionAgeMs: 500, maxConnectionAgeGraceMs: 300, maxConcurrentStreams: 2 })()).not.toThrow();
  });

  it.each([
    ["maxConcurrentStreams", 0],
    ["maxConcurrentStreams", -1],
    ["maxConcurrentStreams", 1.5],
    ["maxReceiveMessageBytes", 0],
    ["maxReceiveMessageBytes", -1024],
    ["maxSendMessageBytes", 0],
  ])("refuses transport.%s = %s", (key, value) => {
    expect(build({ [key]: value })).toThrow(ConfigError);
    expect(build({ [key]: value })).toThrow(new RegExp(`transport\\.${key} must be a positive whole number`));
  });

  it.each([
    ["keepaliveTimeoutMs", 0, /from 1 to 2147483647/],
    ["keepaliveTimeoutMs", 3e9, /from 1 to 2147483647/],
    ["maxConnectionIdleMs", 0, /from 1 to 2147483647/],
    ["maxConnectionIdleMs", 1.5, /from 1 to 2147483647/],
    ["maxConnectionAgeMs", -1, /from 0 to 2147483647/],
    ["maxConnectionAgeMs", 3e9, /from 0 to 2147483647/],
    ["maxConnectionAgeGraceMs", -5, /from 0 to 2147483647/],
  ])("refuses transport.%s = %s (Node's timers would turn it into 1 ms, or off)", (key, value, message) => {
    expect(build({ [key]: value })).toThrow(ConfigError);
    expect(build({ [key]: value })).toThrow(message);
  });

  it("refuses a keepalive shorter than the server's minimum ping interval", () => {
    expect(build({ keepaliveTimeMs: 5000 })).toThrow(ConfigError);
    expect(build({ keepaliveTimeMs: 5000 })).toThrow(/transport\.keepaliveTimeMs must be at least 10000/);
  });

  it("refuses a transport value of the wrong type, and an unknown transport setting", () => {
    expect(build({ maxConnectionIdleMs: "300" })).toThrow(/transport\.maxConnectionIdleMs must be a number/);
    expect(build({ maxConnectionIdle: 300 })).toThrow(/unknown setting transport\.maxConnectionIdle/);
    expect(build({ maxConnectionIdle: 300 })).toThrow(ConfigError);
  });
});
