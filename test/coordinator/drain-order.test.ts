import { randomUUID } from "node:crypto";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { AgentState } from "../../gen/baton/v1/common_pb.js";
import { Control } from "../../gen/baton/v1/control_pb.js";
import type { ConnectResponse } from "../../gen/baton/v1/session_pb.js";
import { createClient } from "../../src/rpc/index.js";
import { createMemoryStore, type Store } from "../../src/store/index.js";
import { useFixture } from "../helpers/fixture.js";
import { openRawSession, type RawSession } from "../helpers/raw-session.js";
import { startServer, waitFor } from "../helpers/server.js";

const fx = useFixture();

// A directive is held until its record is durable; a Drain sent meanwhile must not overtake
// it on the stream (an SDK defers what comes after a Drain).
describe("Drain and the directives placed before it", () => {
  it("the Drain reaches the agent after a directive placed before it that was still waiting for its record", async () => {
    const inner = createMemoryStore();
    // The write that carries the directive's record waits until the test opens it.
    let gated = false;
    let open: (() => void) | undefined;
    const store: Store = {
      ...inner,
      async write(ops, conditions) {
        if (gated && ops.some((op) => op.key.startsWith("directive/"))) await new Promise<void>((resolve) => (open = resolve));
        return inner.write(ops, conditions);
      },
    };
    fx.srv = await startServer(fx.pki, {}, store);
    const seen: ConnectResponse[] = [];
    const raw = await openRawSession(fx.srv.address, await fx.pki.credentials("managed_agent", "drain_order_1"), "drain_order_1");
    fx.defer(() => raw.close());
    // Its status, pushed (the synced view the coordinator plans from), and every status request answered.
    const status = (requestId: string) =>
      raw.send({ kind: { case: "signedReports", value: raw.signedReports([{ kind: { case: "statusResponse", value: { requestId, timestamp: timestampNow(), sourceAgent: "drain_order_1", state: AgentState.ONLINE } } }]) } });
    status(randomUUID());
    const answering = setInterval(() => {
      for (const frame of raw.received.splice(0)) {
        seen.push(frame);
        for (const m of frame.kind.case === "signedMessages" ? raw.decode(frame.kind.value).messages : []) if (m.kind.case === "statusRequest") status(m.kind.value.requestId);
      }
    }, 5);
    fx.defer(() => clearInterval(answering));
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));

    // The directive is placed; its record is not durable yet, so it is held.
    gated = true;
    const submitted = control.submitTask({ task: { taskId: "before-the-drain", requiredCapabilities: ["python"] } });
    await waitFor(() => open, 30_000, "the directive's journal write to be under way");
    fx.srv.server.coordinator.beginDrain("test: drain while a directive waits for its record");
    gated = false;
    open!();
    await submitted;

    const kinds = () => seen.flatMap((frame: ConnectResponse) => frameKinds(raw, frame));
    await waitFor(() => kinds().includes("drain") && kinds().includes("directive"), 30_000, "the directive and the Drain");
    expect(kinds().filter((k) => k === "drain" || k === "directive")).toEqual(["directive", "drain"]);
  });
});

function frameKinds(raw: RawSession, frame: ConnectResponse): string[] {
  const kind = frame.kind;
  if (kind.case === "drain") return ["drain"];
  if (kind.case === "messages") return kind.value.messages.map((m) => m.kind.case ?? "");
  if (kind.case === "signedMessages") return raw.decode(kind.value).messages.map((m) => m.kind.case ?? "");
  return [kind.case ?? ""];
}
