import { durationMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { useFixture } from "../helpers/fixture.js";
import { openRawSession } from "../helpers/raw-session.js";
import { startServer } from "../helpers/server.js";

const fx = useFixture();

// An agent in another language reads its timers from Welcome instead of hard-coding baton's defaults (docs/agents.md).
describe("Welcome names every timer an agent needs", () => {
  it("carries heartbeat misses, disconnect grace, lease and status timeout as configured", async () => {
    fx.srv = await startServer(fx.pki, {
      session: { heartbeatIntervalMs: 700, heartbeatMisses: 7, disconnectGraceMs: 4321, statusTimeoutMs: 2345, syncIntervalMs: 150 },
      delivery: { leaseMs: 12_345 },
      security: { replayWindowMs: 90_000 },
    });
    const raw = await openRawSession(fx.srv.address, await fx.pki.credentials("managed_agent", "timers_1"), "timers_1");
    fx.defer(() => raw.close());
    const w = raw.welcome;
    expect(durationMs(w.heartbeatInterval!)).toBe(700);
    expect(w.heartbeatMisses).toBe(7);
    expect(durationMs(w.disconnectGrace!)).toBe(4321);
    expect(durationMs(w.lease!)).toBe(12_345);
    expect(durationMs(w.statusTimeout!)).toBe(2345);
    expect(durationMs(w.syncInterval!)).toBe(150);
    expect(durationMs(w.replayWindow!)).toBe(90_000);
  });
});
