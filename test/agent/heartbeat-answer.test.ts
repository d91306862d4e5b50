import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampNow } from "@bufbuild/protobuf/wkt";
import { Server } from "@grpc/grpc-js";
import { ConnectResponseSchema, Coordinator as CoordinatorService, type ConnectRequest } from "../../gen/baton/v1/session_pb.js";
import { createAgent } from "../../src/agent/index.js";
import { createLogger } from "../../src/logging.js";
import { adaptService, serverCredentials } from "../../src/rpc/index.js";
import { createKeyring } from "../../src/security/index.js";
import { useFixture } from "../helpers/fixture.js";

// The agent answers each coordinator heartbeat with its own, so a coordinator that ticks its
// sessions together reads their heartbeats together; its own timer covers a silent
// coordinator. A real gRPC server on port 0 plays the coordinator, to see each frame the agent sends.

const fx = useFixture();

interface Script {
  intervalMs: number;
  /** Runs once the Welcome is out: send() yields a coordinator heartbeat, next() reads the agent's next frame. */
  run(io: { send(): void; next(): Promise<ConnectRequest> }): Promise<void>;
}

async function fakeCoordinator(script: Script): Promise<{ address: string; done: Promise<void> }> {
  const keyring = createKeyring();
  let finish!: (err?: unknown) => void;
  const done = new Promise<void>((resolve, reject) => (finish = (err) => (err ? reject(err) : resolve())));
  const service = adaptService(
    CoordinatorService,
    {
      async *connect(requests) {
        const iterator = requests[Symbol.asyncIterator]();
        await iterator.next();
        yield create(ConnectResponseSchema, { kind: { case: "welcome", value: { sessionId: randomUUID(), coordinatorId: "fake", heartbeatInterval: durationFromMs(script.intervalMs), heartbeatMisses: 1000, keys: keyring.toRotation() } } });
        const outgoing: Array<ReturnType<typeof create<typeof ConnectResponseSchema>>> = [];
        let wake: () => void = () => {};
        const io = {
          send: () => {
            outgoing.push(create(ConnectResponseSchema, { kind: { case: "heartbeat", value: { sentAt: timestampNow() } } }));
            wake();
          },
          next: async () => {
            const n = await iterator.next();
            if (n.done) throw new Error("the agent ended its stream");
            return n.value;
          },
        };
        let ended = false;
        script.run(io).then(() => finish(), finish).finally(() => {
          ended = true;
          wake();
        });
        while (!ended) {
          while (outgoing.length > 0) yield outgoing.shift()!;
          await new Promise<void>((resolve) => (wake = resolve));
        }
      },
    },
    { logger: createLogger({ level: "silent" }) },
  );
  const server = new Server();
  server.addService(service.definition, service.implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", serverCredentials({ ca: fx.pki.ca.certPem, cert: fx.pki.server.certPem, key: fx.pki.server.keyPem }), (err, p) => (err ? reject(err) : resolve(p))),
  );
  fx.defer(() => server.forceShutdown());
  return { address: `localhost:${port}`, done };
}

async function heartbeatAfter(next: () => Promise<ConnectRequest>): Promise<void> {
  for (;;) if ((await next()).kind.case === "heartbeat") return;
}

describe("the agent's heartbeats", () => {
  it("answer each of the coordinator's at once, long before the agent's own interval", async () => {
    let answered = 0;
    // A minute's interval: the agent's timer cannot be what sends these.
    const fake = await fakeCoordinator({
      intervalMs: 60_000,
      async run({ send, next }) {
        for (let i = 0; i < 5; i++) {
          send();
          await heartbeatAfter(next);
          answered++;
        }
      },
    });
    const agent = createAgent({ address: fake.address, agentId: "answering", credentials: await fx.pki.credentials("managed_agent", "answering"), reconnect: false });
    fx.defer(() => agent.close());
    await agent.connect();
    await fake.done;
    expect(answered).toBe(5);
  });

  it("still go out on the agent's own interval when the coordinator sends none", async () => {
    let heard = 0;
    const fake = await fakeCoordinator({
      intervalMs: 100,
      async run({ next }) {
        for (; heard < 3; heard++) await heartbeatAfter(next);
      },
    });
    const agent = createAgent({ address: fake.address, agentId: "ticking", credentials: await fx.pki.credentials("managed_agent", "ticking"), reconnect: false });
    fx.defer(() => agent.close());
    await agent.connect();
    await fake.done;
    expect(heard).toBe(3);
  });
});
