// Three coordinators on etcd under load: the leader SIGKILLed, and another time paused
// with SIGSTOP past its lease and resumed. A fault checker in the style of
// test/faults/checker.ts counts lost tasks (accepted, never ended), duplicate effects (one
// directive applied twice by one agent process) and unexpected effects (for tasks never
// accepted); each must be 0, and the paused leader's late write must be refused.
import { afterEach, describe, expect, it } from "vitest";
import { TaskState, type Task } from "../../gen/baton/v1/control_pb.js";
import { Code, toBatonError } from "../../src/errors.js";
import { startEtcd, type EtcdCluster } from "./etcd.js";
import { LEASE_TTL_S, startReplicaSet, type Replica, type ReplicaSet } from "./replicas.js";

const TASKS = Number(process.env.BATON_CLUSTER_TASKS ?? 1000);
const FAULT_AT = Math.floor(TASKS / 3);

let etcd: EtcdCluster | undefined;
let set: ReplicaSet | undefined;
afterEach(async () => {
  await set?.stop();
  await etcd?.stop();
  set = undefined;
  etcd = undefined;
});

const taskId = (i: number) => `task-${String(i).padStart(5, "0")}`;

async function listAll(s: ReplicaSet): Promise<Map<string, Task>> {
  const tasks = new Map<string, Task>();
  let token = "";
  do {
    const page = await s.control((c) => c.listTasks({ pageSize: 1000, pageToken: token }, { deadline: 10_000 }), 10_000);
    for (const t of page.tasks) tasks.set(t.spec!.taskId, t);
    token = page.nextPageToken;
  } while (token);
  return tasks;
}

/** Submits TASKS tasks one by one (each retried, idempotently, until the leader answers), running `fault` after FAULT_AT. */
async function submitUnderFault(s: ReplicaSet, fault: () => Promise<void>): Promise<Set<string>> {
  const accepted = new Set<string>();
  let faulting: Promise<void> | undefined;
  for (let i = 0; i < TASKS; i++) {
    if (i === FAULT_AT) faulting = fault();
    await s.control((c) => c.submitTask({ task: { taskId: taskId(i), requiredCapabilities: ["work"], input: { i } } }, { deadline: 5000 }));
    accepted.add(taskId(i));
  }
  await faulting;
  return accepted;
}

/** Waits (bounded) until every accepted task has ended; then the checker's counts. */
async function check(s: ReplicaSet, accepted: Set<string>, extraIds: string[] = []) {
  const deadline = Date.now() + 180_000;
  let tasks = new Map<string, Task>();
  for (;;) {
    tasks = await listAll(s).catch(() => tasks);
    const open = [...accepted].filter((id) => ![TaskState.SUCCEEDED, TaskState.DEAD_LETTERED].includes(tasks.get(id)?.state ?? TaskState.UNSPECIFIED));
    if (open.length === 0) break;
    if (Date.now() > deadline) throw new Error(`waited 180 s for every accepted task to end; ${open.length} still open: ${open.slice(0, 5).join(", ")}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  const effects = s.effects();
  const perProcess = new Map<string, number>();
  for (const e of effects) perProcess.set(`${e.pid}/${e.directive}`, (perProcess.get(`${e.pid}/${e.directive}`) ?? 0) + 1);
  const perTask = new Map<string, number>();
  for (const e of effects) perTask.set(e.task, (perTask.get(e.task) ?? 0) + 1);
  const counts = {
    tasks: accepted.size,
    succeeded: [...accepted].filter((id) => tasks.get(id)?.state === TaskState.SUCCEEDED).length,
    lost: [...accepted].filter((id) => ![TaskState.SUCCEEDED, TaskState.DEAD_LETTERED].includes(tasks.get(id)?.state ?? TaskState.UNSPECIFIED)).length,
    duplicate_effects: [...perProcess.values()].filter((n) => n > 1).reduce((a, n) => a + n - 1, 0),
    reexecutions: [...perTask.values()].filter((n) => n > 1).reduce((a, n) => a + n - 1, 0),
    unexpected: effects.filter((e) => !accepted.has(e.task)).length + [...tasks.keys()].filter((id) => !accepted.has(id)).length,
    refused_present: extraIds.filter((id) => tasks.has(id)).length,
  };
  console.log(`faults: ${Object.entries(counts).map(([k, v]) => `${k}=${v}`).join(" ")}`);
  return counts;
}

async function scenario(members: number, fault: "kill" | "pause") {
  etcd = await startEtcd(members);
  set = await startReplicaSet(etcd.endpoints, 3);
  const s = set;
  const leader = await s.waitForLeader();
  await s.startAgents(3);
  let failoverMs = 0;
  let next: Replica | undefined;
  const lateIds: string[] = [];
  let lateCode = "";
  const accepted = await submitUnderFault(s, async () => {
    const t0 = performance.now();
    const electing = s.waitForLeader({ except: leader, timeoutMs: 60_000 });
    leader.proc.child.kill(fault === "kill" ? "SIGKILL" : "SIGSTOP");
    next = await electing;
    failoverMs = performance.now() - t0;
    if (fault === "pause") {
      // The old leader wakes up believing it leads: its first write must be refused by the fence.
      const { client, close } = s.controlOn(leader);
      try {
        leader.proc.child.kill("SIGCONT");
        const late = "late-write-from-the-paused-leader";
        lateIds.push(late);
        const err = await client.submitTask({ task: { taskId: late, requiredCapabilities: ["work"] } }, { deadline: 10_000 }).then(() => undefined, (e: unknown) => toBatonError(e));
        lateCode = err ? `${Code[err.code]} ${err.message}` : "accepted";
        expect(err?.code, "the paused leader's late submit must fail").toBe(Code.UNAVAILABLE);
      } finally {
        close();
      }
      // It sees the term is over and stops (a supervisor would start it again as a follower).
      const seen = await leader.proc.waitForLine((l) => l.msg === "leadership lost: the lease is gone; this term's writes are refused" || /write refused/.test(JSON.stringify(l.err ?? "")), 30_000);
      console.log(`the paused leader after SIGCONT: ${String(seen.msg)} (late submit: ${lateCode})`);
    }
  });
  console.log(`failover (${fault}, etcd members=${members}, lease TTL ${LEASE_TTL_S} s): ${Math.round(failoverMs)} ms from the ${fault === "kill" ? "SIGKILL" : "SIGSTOP"} to ${next!.name} serving with the journal loaded`);
  const counts = await check(s, accepted, lateIds);
  expect(counts).toMatchObject({ lost: 0, duplicate_effects: 0, unexpected: 0, refused_present: 0, succeeded: TASKS });
}

describe("three coordinators on one etcd, under load", () => {
  it(`loses nothing when the leader is SIGKILLed (${TASKS} tasks)`, () => scenario(1, "kill"), 400_000);
  it(`loses nothing when the leader is paused past its lease and resumed; its late writes are refused (${TASKS} tasks)`, () => scenario(1, "pause"), 400_000);
});

describe("three coordinators on a three-member etcd cluster", () => {
  it(`loses nothing when the leader is SIGKILLed (${TASKS} tasks)`, () => scenario(3, "kill"), 400_000);
});
