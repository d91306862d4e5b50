// The Resource Manager port of a coordinator that follows RM instances (the service
// registry's resolve, here a variable the test sets): what a newly used instance is sent,
// with real ResourceManager services over their own inventories on 127.0.0.1:0.
import { Server } from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { ResourceManager } from "../../gen/baton/v1/resource_manager_pb.js";
import { createCallBreaker } from "../../src/breakers/index.js";
import { BatonError, Code, toBatonError } from "../../src/errors.js";
import { createLogger } from "../../src/logging.js";
import { createResourceManagerService, remoteResourceManager, ResourceInventory } from "../../src/resources/index.js";
import { adaptService, createChannel, serverCredentials, type Channel, type ServiceImpl } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { LogCapture } from "../helpers/server.js";

const fx = useFixture();
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type RmImpl = ServiceImpl<typeof ResourceManager>;

/** A real RM on its own inventory; `change` replaces methods over the real ones (an overloaded or slow instance). */
async function startRm(id: string, change: (base: RmImpl) => Partial<RmImpl> = () => ({})): Promise<{ id: string; inventory: ResourceInventory; channel: Channel }> {
  const inventory = new ResourceInventory();
  const base = createResourceManagerService(inventory);
  const adapted = adaptService(ResourceManager, { ...base, ...change(base) }, { logger: createLogger({ level: "silent" }) });
  const server = new Server();
  server.addService(adapted.definition, adapted.implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", serverCredentials({ ca: fx.pki.ca.certPem, cert: fx.pki.server.certPem, key: fx.pki.server.keyPem }), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const channel = createChannel(`localhost:${port}`, await fx.pki.credentials("operator", "op"));
  cleanups.push(() => server.forceShutdown(), () => channel.close());
  return { id, inventory, channel };
}

/** The port under test, following whichever RM `use` names last. */
function follow(callTimeoutMs?: number) {
  let current: { id: string; channel: Channel } | undefined;
  const logs = new LogCapture();
  const breaker = createCallBreaker("resource-manager", createLogger({ level: "silent" }), { resetTimeoutMs: 3_600_000 });
  cleanups.push(() => breaker.shutdown());
  const port = remoteResourceManager(() => ({ channel: current!.channel, instance: current!.id }), breaker, createLogger({ level: "info", destination: logs }), callTimeoutMs);
  return { port, logs, use: (rm: { id: string; channel: Channel }) => void (current = rm) };
}

const gpus = [
  { $typeName: "baton.v1.Resource" as const, resourceId: "gpu-0", kind: "gpu", capacity: 1, attributes: {} },
  { $typeName: "baton.v1.Resource" as const, resourceId: "gpu-1", kind: "gpu", capacity: 1, attributes: {} },
];
const onGpu = (reservationId: string, resourceId: string) => ({ reservationId, holder: `task-of-${reservationId}`, agentId: "a1", requests: [{ $typeName: "baton.v1.ResourceRequest" as const, resourceId, kind: "", amount: 1 }] });
const codeOf = (p: Promise<unknown>) => p.then(() => "answered", (err: unknown) => toBatonError(err).code);

describe("a newly used Resource Manager is reconciled with what the coordinator holds", () => {
  it.each([
    ["overloaded: it answers UNAVAILABLE", Code.UNAVAILABLE],
    ["slow: its answer comes after the call's deadline", Code.DEADLINE_EXCEEDED],
  ])("a reservation whose replay fails because the new RM is %s is kept and replayed by the next call, not dropped", async (_what, code) => {
    const rmA = await startRm("rm-a");
    let struggling = true;
    const rmB = await startRm("rm-b", (base) => ({
      async reserve(req, ctx) {
        if (struggling && code === Code.UNAVAILABLE) throw new BatonError(Code.UNAVAILABLE, "overloaded");
        // A slow instance: it gets to the reservation only once the caller gave up waiting.
        if (struggling) await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
        return base.reserve!(req, ctx);
      },
    }));
    // The deadline is what the slow instance misses: short, yet far above a loopback call.
    const { port, use } = follow(1500);
    use(rmA);
    await port.register("a1", gpus.slice(0, 1));
    await port.reserve(onGpu("d1", "gpu-0"));

    use(rmB);
    // The replay failed: so does the call, instead of going on as if the new RM held d1.
    expect(await codeOf(port.query({}))).toBe(code);
    struggling = false;
    const status = await port.query({});
    expect(status.flatMap((s) => s.reservations.map((r) => r.reservationId))).toEqual(["d1"]);
    expect(rmB.inventory.reservations()).toEqual(["d1"]);
    // The GPU is d1's until it is released: another directive is refused it, then gets it.
    expect(await codeOf(port.reserve(onGpu("d2", "gpu-0")))).toBe(Code.ABORTED);
    expect(await port.release("d1")).toBe(true);
    expect((await port.reserve(onGpu("d2", "gpu-0"))).map((r) => r.resourceId)).toEqual(["gpu-0"]);
  });

  it("a reservation the new RM refuses (the resource is no longer offered) is dropped with a warning naming it", async () => {
    const [rmA, rmB] = [await startRm("rm-a"), await startRm("rm-b")];
    const { port, logs, use } = follow();
    use(rmA);
    await port.register("a1", gpus);
    await port.reserve(onGpu("d1", "gpu-0"));
    await port.reserve(onGpu("d2", "gpu-1"));
    // The agent no longer offers gpu-0; the old RM keeps it while d1 holds it, a new one never has it.
    await port.register("a1", gpus.slice(1));
    use(rmB);
    await port.query({});
    expect(rmB.inventory.reservations()).toEqual(["d2"]);
    const warned = logs.lines.filter((l) => l.level === "warn" && l.reservation_id === "d1");
    expect(warned.map((l) => l.msg)).toEqual(["the resource manager refused a reservation replayed to it: it is dropped"]);
    // Dropped means not replayed again: a later switch does not send it.
    use(rmA);
    await port.query({});
    expect(rmA.inventory.reservations()).toEqual(["d2"]);
  });

  it("switching back to an instance used earlier releases there what was released meanwhile", async () => {
    const [rmA, rmB] = [await startRm("rm-a"), await startRm("rm-b")];
    const { port, use } = follow();
    use(rmA);
    await port.register("a1", gpus);
    await port.reserve(onGpu("d1", "gpu-0"));
    await port.reserve(onGpu("d2", "gpu-1"));
    // A lapses briefly: B is used, and d1 is released there.
    use(rmB);
    await port.query({});
    expect(rmB.inventory.reservations().sort()).toEqual(["d1", "d2"]);
    expect(await port.release("d1")).toBe(true);
    // B dies: back to A, which still held d1.
    use(rmA);
    const status = await port.query({});
    expect(rmA.inventory.reservations()).toEqual(["d2"]);
    expect(status.find((s) => s.resource?.resourceId === "gpu-0")?.available).toBe(1);
    expect((await port.reserve(onGpu("d3", "gpu-0"))).map((r) => r.resourceId)).toEqual(["gpu-0"]);
  });

  it("a reserve answered by the old instance after the switch is held by the new one too", async () => {
    let entered: () => void = () => {};
    const inside = new Promise<void>((resolve) => (entered = resolve));
    let answer: () => void = () => {};
    const gate = new Promise<void>((resolve) => (answer = resolve));
    const rmA = await startRm("rm-a", (base) => ({
      async reserve(req, ctx) {
        if (req.reservationId === "d2") {
          entered();
          await gate;
        }
        return base.reserve!(req, ctx);
      },
    }));
    const rmB = await startRm("rm-b");
    const { port, use } = follow();
    use(rmA);
    await port.register("a1", gpus);
    await port.reserve(onGpu("d1", "gpu-0"));
    const late = port.reserve(onGpu("d2", "gpu-1"));
    await inside;
    // B is taken into use (and sent what is held) while A has d2's answer still to give.
    use(rmB);
    await port.query({});
    expect(rmB.inventory.reservations()).toEqual(["d1"]);
    answer();
    expect((await late).map((r) => r.resourceId)).toEqual(["gpu-1"]);
    expect(rmB.inventory.reservations().sort()).toEqual(["d1", "d2"]);
    expect(await codeOf(port.reserve(onGpu("d3", "gpu-1")))).toBe(Code.ABORTED);
  });
});
