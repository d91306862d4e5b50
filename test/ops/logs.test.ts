import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger, logProtocolMessage, protocolMessageText } from "../../src/logging.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor } from "../helpers/server.js";
import { TaskState, Control } from "../../gen/baton/v1/control_pb.js";
import { createClient } from "../../src/rpc/index.js";

const fx = useFixture();

describe("readable logs", () => {
  it("protocol lines say what happened to which message, with the spec's fields kept", async () => {
    fx.srv = await startServer(fx.pki, { log: { protocolLevel: "info" } });
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    const agent = await fx.agent("a1", { capabilities: ["work"] });
    await agent.connect();
    void agent.run(async () => ({ ok: true }));
    await control.submitTask({ task: { taskId: "t1", requiredCapabilities: ["work"] } });
    await waitFor(() => fx.srv.server.coordinator.getTask("t1").state === TaskState.SUCCEEDED, 30_000, "t1 to succeed");
    const protocol = fx.srv.logs.lines.filter((l) => typeof l.message_type === "string");
    const sent = protocol.find((l) => l.message_type === "coordination_directive")!;
    expect(sent).toMatchObject({ msg: "directive sent", source: "baton-coordinator", destination: "a1", level: "info" });
    expect(typeof sent.correlation_id).toBe("string");
    expect(typeof sent.timestamp).toBe("string");
    expect(protocol.find((l) => l.message_type === "directive_ack")).toMatchObject({ msg: "directive ack received", source: "a1", destination: "baton-coordinator" });
    expect(protocol.find((l) => l.message_type === "task_completion")).toMatchObject({ msg: "task completion received" });
    // No line is only "sent" or "received".
    expect(fx.srv.logs.lines.filter((l) => l.msg === "sent" || l.msg === "received")).toEqual([]);
  });

  it("names every message type and falls back to its words", () => {
    expect(protocolMessageText("coordination_directive", "sent")).toBe("directive sent");
    expect(protocolMessageText("agent_status_response", "received")).toBe("status response received");
    expect(protocolMessageText("something_new", "sent")).toBe("something new sent");
  });

  it("pretty: one coloured-free, human line per entry when asked (terminals get colour), JSON otherwise", async () => {
    const out = new PassThrough();
    const chunks: string[] = [];
    out.on("data", (d: Buffer) => chunks.push(d.toString()));
    const logger = createLogger({ destination: out, pretty: true, base: { coordinator_id: "c1" } });
    logProtocolMessage(logger, { correlation_id: "r1", source: "c1", destination: "a1", message_type: "coordination_directive" }, "sent", "info");
    await waitFor(() => chunks.join("").includes("\n"), 10_000, "the pretty line");
    const line = chunks.join("");
    expect(line).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: directive sent \{.*"correlation_id":"r1".*"message_type":"coordination_directive".*\}\n$/);
    expect(line).not.toContain("coordinator_id");
    const json = new PassThrough();
    const raw: string[] = [];
    json.on("data", (d: Buffer) => raw.push(d.toString()));
    createLogger({ destination: json }).info({ a: 1 }, "plain");
    await waitFor(() => raw.join("").includes("\n"), 10_000, "the JSON line");
    expect(JSON.parse(raw.join(""))).toMatchObject({ msg: "plain", a: 1, level: "info" });
  });
});
