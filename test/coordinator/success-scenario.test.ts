import { spawn, type ChildProcess } from "node:child_process";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Control, CoordinationState, TaskState } from "../../gen/baton/v1/control_pb.js";
import { PerformanceMonitor } from "../../gen/baton/v1/performance_monitor_pb.js";
import { ResourceManager } from "../../gen/baton/v1/resource_manager_pb.js";
import { createChannel, createClient } from "../../src/rpc/index.js";
import { makePki, type TestPki } from "../helpers/pki.js";
import { ROOT, TSX } from "../helpers/process.js";
import { startServer, waitFor, type TestServer } from "../helpers/server.js";

// The spec's sequence diagram, as (message_type, source, destination) for one round.
// MA is whichever agent the round chose; CA, PM and RM are the coordinator and the embedded services.
const SEQUENCE: Array<[string, string, string]> = [
  ["agent_status_request", "CA", "MA"],
  ["agent_status_response", "MA", "CA"],
  ["metrics_request", "CA", "PM"],
  ["system_metrics", "PM", "CA"],
  ["resource_query", "CA", "RM"],
  ["resource_status", "RM", "CA"],
  ["coordination_directive", "CA", "MA"],
  ["directive_ack", "MA", "CA"],
  ["progress_update", "MA", "CA"],
  ["metrics_update", "CA", "PM"],
  ["task_completion", "MA", "CA"],
  ["performance_report", "CA", "PM"],
];

let pki: TestPki;
let srv: TestServer;
let certs: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  pki = await makePki();
  const files: Record<string, string> = { "ca.pem": pki.ca.certPem };
  for (const id of ["agent-1", "agent-2", "agent-3"]) {
    const leaf = await pki.issue("managed_agent", id);
    files[`${id}.pem`] = leaf.certPem;
    files[`${id}.key`] = leaf.keyPem;
  }
  certs = pki.writeFiles(files);
});
afterAll(() => pki.cleanup());
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill("SIGKILL");
  await srv?.stop();
});

function agentProcess(id: string): ChildProcess {
  const child = spawn(process.execPath, ["--import", TSX, `${ROOT}test/faults/agent-child.ts`, srv.address, id, certs, `${certs}/${id}.effects`], { stdio: ["ignore", "ignore", "inherit"] });
  children.push(child);
  return child;
}

describe("the success scenario, end to end", () => {
  it("runs the seven steps with three agents, one killed midway, every message where and when the spec says", async () => {
    // syncIntervalMs 0: every round asks every agent for its status, as the spec's diagram draws it.
    // With the synced view (the default) step 2 asks only agents whose pushed status is stale;
    // test/coordinator/synced-view.test.ts covers that.
    srv = await startServer(pki, { session: { heartbeatIntervalMs: 200, heartbeatMisses: 50, disconnectGraceMs: 1000, ackTimeoutMs: 500, syncIntervalMs: 0 }, delivery: { backoffInitialMs: 50, backoffMaxMs: 200, leaseMs: 3000 } });
    const procs = ["agent-1", "agent-2", "agent-3"].map(agentProcess);
    await waitFor(() => srv.server.coordinator.agents().filter((a) => a.session).length === 3 || undefined, 120_000, "three agents");
    const ch = createChannel(srv.address, await pki.credentials("operator", "ops"));
    const control = createClient(Control, ch);
    const pm = createClient(PerformanceMonitor, ch);
    const rm = createClient(ResourceManager, ch);
    try {
      let submitted = 0;
      const wave = (n: number) => Promise.all(Array.from({ length: n }, () => control.submitTask({ task: { taskId: `t${submitted++}`, requiredCapabilities: ["work"] } })));
      // Kill one agent while work is out. Tasks take 5-45 ms, so on a fast machine a task
      // can finish before the next is submitted: the watch runs beside the submissions,
      // and waves go on until agent-2 is seen holding work (bounded: 20 waves). Two held
      // directives, so that one completion already on the wire cannot leave nothing to move.
      let holding = false;
      const watch = waitFor(() => srv.server.coordinator.pendingDirectives("agent-2").length > 1 || undefined, 120_000, "work on agent-2").then(() => {
        holding = true;
        procs[1]!.kill("SIGKILL");
      });
      // Awaited below; if a wave throws first, the test fails on that, not on this later.
      watch.catch(() => {});
      for (let w = 0; w < 20 && !holding; w++) await wave(10);
      await watch;
      await wave(10);
      const deadline = Date.now() + 120_000;
      for (;;) {
        const { tasks } = await control.listTasks({ pageSize: 500 });
        if (tasks.length === submitted && tasks.every((t) => t.state === TaskState.SUCCEEDED)) break;
        if (Date.now() > deadline) throw new Error(tasks.filter((t) => t.state !== TaskState.SUCCEEDED).map((t) => `${t.spec!.taskId}:${TaskState[t.state]}:${t.reason}`).join(" "));
        await new Promise((r) => setTimeout(r, 50));
      }
      await waitFor(() => srv.server.coordinator.coordination().rounds.length === 0 || undefined, 60_000, "rounds finished");

      // Each round that ran work shows the spec's sequence, in order, between the right parties.
      const lines = srv.logs.lines.filter((l) => typeof l.message_type === "string");
      const byRound = new Map<string, typeof lines>();
      for (const l of lines) {
        const list = byRound.get(l.correlation_id as string) ?? [];
        list.push(l);
        byRound.set(l.correlation_id as string, list);
      }
      const { recent } = await control.getCoordination({});
      const succeededRounds = recent.filter((r) => r.taskIds.length > 0);
      expect(succeededRounds.length).toBeGreaterThan(0);
      let checked = 0;
      for (const round of succeededRounds) {
        const seq = byRound.get(round.roundId) ?? [];
        const roles = (who: string) => (who === "baton-coordinator" ? "CA" : who === "performance-monitor" ? "PM" : who === "resource-manager" ? "RM" : "MA");
        const observed = seq.map((l) => [l.message_type as string, roles(l.source as string), roles(l.destination as string)]);
        // Every message the round sent or got is one of the spec's, between the parties the spec names.
        for (const o of observed) if (o[0] !== "completion_ack") expect(SEQUENCE).toContainEqual(o);
        // The first occurrence of each step comes in the spec's order.
        const firsts = SEQUENCE.map(([type]) => observed.findIndex((o) => o[0] === type));
        if (firsts.every((i) => i >= 0)) {
          expect([...firsts].sort((a, b) => a - b)).toEqual(firsts);
          checked++;
        }
        expect(round.state).toBe(CoordinationState.IDLE);
      }
      expect(checked).toBeGreaterThan(0);

      // The killed agent's unfinished work completed elsewhere.
      const { tasks } = await control.listTasks({ pageSize: 500 });
      const moved = tasks.filter((t) => t.attempts.some((a) => a.agents.includes("agent-2") && a.outcome === "agent_unavailable"));
      expect(moved.length).toBeGreaterThan(0);
      for (const t of moved) expect(t.attempts.at(-1)!.agents[0]).not.toBe("agent-2");
      expect(srv.server.coordinator.agent("agent-2")!.breaker.state).toBe("open");

      // The Performance Monitor saw the rounds and the progress; the Resource Manager holds nothing.
      const metrics = await pm.getMetrics({ requestId: "550e8400-e29b-41d4-a716-446655440000", timestamp: timestampNow() });
      expect(metrics.rounds!.completed).toBeGreaterThan(0n);
      expect(metrics.agents.map((a) => a.agentId)).toEqual(expect.arrayContaining(["agent-1", "agent-3"]));
      expect(metrics.directiveCompletionTime!.count).toBeGreaterThan(0n);
      const resources = await rm.query({ requestId: "550e8400-e29b-41d4-a716-446655440001", timestamp: timestampNow() });
      expect(resources.resources.every((r) => r.reserved === 0)).toBe(true);
    } finally {
      ch.close();
    }
  }, 300_000);
});
