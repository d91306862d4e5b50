import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { ConnectRequestSchema, Coordinator as CoordinatorService, type ConnectRequest, type ConnectResponse } from "../../gen/baton/v1/session_pb.js";
import { Code } from "../../src/errors.js";
import { createClient, type Channel } from "../../src/rpc/index.js";
import { createAsyncQueue } from "../../src/streams/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor } from "../helpers/server.js";

const fx = useFixture();

interface Stream {
  frames: ConnectResponse[];
  ended: { code: number } | undefined;
  close(): void;
}

/** Opens Connect as `agentId` on `channel`: Hello, then heartbeats; records frames and the end status. */
function open(channel: Channel, agentId: string): Stream {
  const outgoing = createAsyncQueue<ConnectRequest>({ capacity: 1000, overflow: "error", name: "replacement test" });
  outgoing.push(create(ConnectRequestSchema, { kind: { case: "hello", value: { agentId, capabilities: ["python"] } } }));
  const beat = setInterval(() => outgoing.push(create(ConnectRequestSchema, { kind: { case: "heartbeat", value: {} } })), 50);
  const stream: Stream = { frames: [], ended: undefined, close: () => { clearInterval(beat); outgoing.close(); } };
  void (async () => {
    try {
      for await (const frame of createClient(CoordinatorService, channel).connect(outgoing)) stream.frames.push(frame);
      stream.ended = { code: Code.OK };
    } catch (err) {
      stream.ended = { code: (err as { code: number }).code };
    } finally {
      clearInterval(beat);
    }
  })();
  return stream;
}

const heartbeats = (s: Stream) => s.frames.filter((f) => f.kind.case === "heartbeat").length;

describe("one session per agent id", () => {
  for (const shared of [true, false]) {
    it(`two Connects of one agent at once: the replaced stream ends ABORTED, the other lives (${shared ? "one connection" : "separate connections"})`, async () => {
      // Heartbeats every 100 ms, so the survivor's are counted quickly; 300 misses (30 s) so a stalled
      // loaded machine never drops a stream for silence, which would look like a second replacement.
      fx.srv = await startServer(fx.pki, { session: { heartbeatIntervalMs: 100, heartbeatMisses: 300 } });
      const creds = await fx.pki.credentials("managed_agent", "twin");
      for (let round = 0; round < 5; round++) {
        const a = open(fx.channel(creds), "twin");
        const b = open(shared ? fx.channel(creds) : fx.channel(creds), "twin");
        const both = [a, b];
        fx.defer(() => both.forEach((s) => s.close()));
        // Exactly one is replaced, and it is told so.

        const replaced = await waitFor(() => both.find((s) => s.ended), 20_000, "one of the two streams to end");
        expect(replaced.ended!.code).toBe(Code.ABORTED);
        const live = both.find((s) => s !== replaced)!;
        // The survivor keeps getting heartbeats and is the session the coordinator holds.
        const seen = heartbeats(live);
        await waitFor(() => heartbeats(live) >= seen + 3, 20_000, "heartbeats on the surviving stream");
        expect(live.ended).toBeUndefined();
        const sessionId = live.frames.find((f) => f.kind.case === "welcome")?.kind.value as { sessionId: string } | undefined;
        expect(fx.srv.server.coordinator.agent("twin")?.sessionId).toBe(sessionId?.sessionId);
        for (const s of both) s.close();
        await waitFor(() => live.ended, 20_000, "the survivor to end after it closed");
      }
    });
  }
});
