import { timestampNow } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import type { CoordinationDirective } from "../../gen/baton/v1/coordination_pb.js";
import { ResourceManager } from "../../gen/baton/v1/resource_manager_pb.js";
import { createAgent, type BatonAgent } from "../../src/agent/index.js";
import { createChannel, createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer } from "../helpers/server.js";

const fx = useFixture();

describe("adjust_resources", () => {
  it("moves an idle agent's free resource to an overloaded agent that needs it, telling both", async () => {
    fx.srv = await startServer(fx.pki);
    const got = new Map<string, CoordinationDirective[]>();
    const start = async (id: string, caps: string[], utilization: number, resources: Array<{ resourceId: string; kind: string; capacity: number }>): Promise<BatonAgent> => {
      const a = createAgent({ address: fx.srv.address, agentId: id, credentials: await fx.pki.credentials("managed_agent", id), capabilities: caps, resources, utilization: () => utilization });
      fx.defer(() => a.close({ flushMs: 100 }));
      await a.connect();
      void a.run(async (d) => {
        got.set(id, [...(got.get(id) ?? []), d]);
        return {};
      });
      return a;
    };
    await start("busy", ["gpu"], 0.95, []);
    await start("idle", [], 0.05, [{ resourceId: "gpu-0", kind: "gpu", capacity: 1 }]);
    const ch = createChannel(fx.srv.address, await fx.pki.credentials("operator", "ops"));
    fx.defer(() => ch.close());
    const control = createClient(Control, ch);
    await control.submitTask({ task: { taskId: "render", requiredCapabilities: ["gpu"], resources: [{ kind: "gpu", amount: 1 }] } });
    const deadline = Date.now() + 8000;
    for (;;) {
      if ((await control.getTask({ taskId: "render" })).task!.state === TaskState.SUCCEEDED) break;
      if (Date.now() > deadline) throw new Error("render never ran");
      await new Promise((r) => setTimeout(r, 20));
    }
    const action = (d: CoordinationDirective) => d.parameters?.kind.case;
    expect(got.get("idle")!.map(action)).toEqual(["adjustResources"]);
    expect(got.get("idle")![0]!.parameters!.kind.value).toMatchObject({ revoke: ["gpu-0"] });
    expect(got.get("busy")!.map(action)).toEqual(["adjustResources", "assignTask"]);
    expect(got.get("busy")![1]!.parameters!.kind.value).toMatchObject({ resources: ["gpu-0"] });
    const rm = createClient(ResourceManager, ch);
    const status = await rm.query({ requestId: "550e8400-e29b-41d4-a716-446655440000", timestamp: timestampNow(), resourceIds: ["gpu-0"] });
    expect(status.resources[0]!.agentId).toBe("busy");
  });
});
