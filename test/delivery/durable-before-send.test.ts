import { describe, expect, it } from "vitest";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { createClient } from "../../src/rpc/index.js";
import { createMemoryStore, type Store } from "../../src/store/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor } from "../helpers/server.js";

// A directive reaches its agent only once its journal record is durable, even when the
// agent's own reports pump its outbox while that record is being written.

const fx = useFixture();

/** A store whose writes can be held (as a slow fsync would hold them), and released. */
function gatedStore(): { store: Store; hold(): void; release(): void; waiting(): number } {
  const inner = createMemoryStore();
  let held = false;
  let gates: Array<() => void> = [];
  return {
    store: {
      ...inner,
      async write(ops, conditions) {
        if (held) await new Promise<void>((resolve) => gates.push(resolve));
        return inner.write(ops, conditions);
      },
    },
    hold: () => void (held = true),
    release() {
      held = false;
      for (const g of gates.splice(0)) g();
    },
    waiting: () => gates.length,
  };
}

describe("a directive and its record", () => {
  it("is not written to the agent while its record waits on the journal, whatever pumps the agent's outbox", async () => {
    const gate = gatedStore();
    fx.srv = await startServer(fx.pki, {}, gate.store);
    const agent = await fx.agent("a1", { capabilities: ["work"], maxInFlight: 4 });
    await agent.connect();
    const received: string[] = [];
    let stopX = false;
    void agent.run(async (d, ctx) => {
      const taskId = d.parameters?.kind.case === "assignTask" ? d.parameters.kind.value.taskId : "";
      received.push(taskId);
      // X reports progress as fast as it can: every report batch pumps the agent's outbox.
      while (taskId === "x" && !stopX) {
        ctx.progress(10);
        await new Promise((r) => setTimeout(r, 2));
      }
      return {};
    });
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    await control.submitTask({ task: { taskId: "x", requiredCapabilities: ["work"] } });
    await waitFor(() => received.includes("x"), 20_000, "x on the agent");
    gate.hold();
    const submitted = control.submitTask({ task: { taskId: "y", requiredCapabilities: ["work"] } });
    // Y is planned (its directive in the outbox) while its record is held, and X's progress keeps coming.
    await waitFor(() => fx.srv.server.coordinator.pendingDirectives("a1").some((d) => d.parameters?.kind.case === "assignTask" && d.parameters.kind.value.taskId === "y"), 20_000, "y's directive in a1's outbox");
    const reportsBefore = fx.srv.logs.lines.filter((l) => l.message_type === "progress_update").length;
    await waitFor(() => fx.srv.logs.lines.filter((l) => l.message_type === "progress_update").length > reportsBefore + 20, 20_000, "x's progress to pump the outbox");
    expect(gate.waiting()).toBeGreaterThan(0);
    expect(received).not.toContain("y");
    gate.release();
    await submitted;
    await waitFor(() => received.includes("y"), 20_000, "y on the agent once its record is durable");
    stopX = true;
    await waitFor(async () => (await control.getTask({ taskId: "x" })).task?.state === TaskState.SUCCEEDED || undefined, 20_000, "x to finish");
  });
});
