import { describe, expect, it } from "vitest";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { createAgent, type AgentOptions, type ReceivedDirective } from "../../src/agent/index.js";
import { createChannel, createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor } from "../helpers/server.js";

// Past 512 pending tasks a pass reads only what the free agents can take, in the planner's
// order (coordination-rounds.ts takeIntake). These run it as a user would, over gRPC with a
// real agent: neither a head of tasks no agent can run nor one submitter's flood may hold
// back what could run.

const fx = useFixture();

async function operator(name: string) {
  const ch = createChannel(fx.srv.address, await fx.pki.credentials("operator", name));
  fx.defer(() => ch.close());
  return createClient(Control, ch);
}

const specs = (prefix: string, n: number, requiredCapabilities: string[]) => Array.from({ length: n }, (_, i) => ({ taskId: `${prefix}-${String(i).padStart(4, "0")}`, requiredCapabilities }));

describe("a pass under a backlog", () => {
  /** An agent that runs ["work"] tasks (options its own), 1,200 tasks `head(i)` submitted first, then 5 plain ones: those 5 must succeed, the head wait. */
  async function runnableBehind(head: (batch: number) => Array<ReturnType<typeof specs>[number] & { resources?: Array<{ resourceId: string; amount: number }> }>, agentOptions: Partial<AgentOptions> = {}): Promise<void> {
    fx.srv = await startServer(fx.pki);
    const agent = createAgent({ address: fx.srv.address, agentId: "a1", credentials: await fx.pki.credentials("managed_agent", "a1"), capabilities: ["work"], maxInFlight: 2, ...agentOptions });
    fx.defer(() => agent.close({ flushMs: 100 }));
    await agent.connect();
    void agent.run(async () => ({ ok: true }));
    const control = await operator("ops");
    for (let i = 0; i < 2; i++) {
      const { results } = await control.submitTasks({ tasks: head(i) });
      expect(results.every((r) => r.created)).toBe(true);
    }
    await control.submitTasks({ tasks: specs("work", 5, ["work"]) });
    const coordinator = fx.srv.server.coordinator;
    await waitFor(() => specs("work", 5, []).every((s) => coordinator.getTask(s.taskId).state === TaskState.SUCCEEDED) || undefined, 60_000, "the 5 runnable tasks to succeed");
    // What cannot run waits, every one of it.
    expect(coordinator.taskCounts().get(TaskState.PENDING)).toBe(1200);
  }

  it("places tasks that sit behind 1,200 older tasks no agent can run", async () => {
    await runnableBehind((i) => specs(`gpu${i}`, 600, ["gpu"]));
  });

  it("places tasks behind 1,200 older ones an able agent lacks the resources for", async () => {
    // The agent runs the head's kind of task, but its one GPU is too small for any of them:
    // the pass's plan leaves its slots free, so it must read past the head.
    await runnableBehind((i) => specs(`big${i}`, 600, ["work"]).map((t) => ({ ...t, resources: [{ resourceId: "gpu-0", amount: 2 }] })), { resources: [{ resourceId: "gpu-0", kind: "gpu", capacity: 1 }] });
  });

  it("orders what it reads as the planner does: each submitter's k-th task before anyone's (k+1)-th", async () => {
    fx.srv = await startServer(fx.pki);
    const agent = createAgent({ address: fx.srv.address, agentId: "a1", credentials: await fx.pki.credentials("managed_agent", "a1"), capabilities: ["work"], maxInFlight: 4 });
    fx.defer(() => agent.close({ flushMs: 100 }));
    await agent.connect();
    const received: ReceivedDirective[] = [];
    void (async () => {
      for await (const d of agent.directives()) {
        d.accept();
        received.push(d);
      }
    })();
    const taskOf = (d: ReceivedDirective) => (d.directive.parameters!.kind.case === "assignTask" ? d.directive.parameters!.kind.value.taskId : "?");
    const flood = await operator("flood");
    const other = await operator("other");
    await flood.submitTasks({ tasks: specs("f", 800, ["work"]) });
    // The flood's first four hold the agent's four slots while the other submitter's tasks arrive.
    await waitFor(() => received.length === 4 || undefined, 30_000, "the first four directives");
    await other.submitTasks({ tasks: specs("o", 3, ["work"]) });
    expect(received.map(taskOf)).toEqual(["f-0000", "f-0001", "f-0002", "f-0003"]);
    // Four completions in one batch free four slots for one pass, which fills them in the planner's order.
    for (const d of received) d.complete({});
    await waitFor(() => received.length === 8 || undefined, 30_000, "the next four directives");
    expect(received.slice(4).map(taskOf)).toEqual(["f-0004", "o-0000", "f-0005", "o-0001"]);
  });
});
