// One baton set-up for a scenario: the coordinator process, agent processes, the driver
// (Control client and event watch), a warm-up task, and cleanup whatever happens.
import { Fleet, type AgentMode } from "./agents.js";
import { openDriver, warmUp, type Driver, type TaskEventState } from "./control.js";
import { startCoordinator, type CoordinatorProcess } from "./coordinator.js";
import type { BenchContext } from "./scenario.js";
import { measureRoles, type Roles } from "./usage.js";

/** What a scenario body gets. */
export interface Baton {
  coordinator: CoordinatorProcess;
  fleet: Fleet;
  driver: Driver;
  /** Agents connected when the body started, and how long connecting took. */
  connect: { connected: number; seconds: number; failed: number; lastError: string };
  /** The processes of a run, by role, for lib/usage.ts. */
  roles(): Roles;
  measure(): ReturnType<typeof measureRoles>;
}

/** Options of withBaton. */
export interface BatonOptions {
  agents: number;
  mode: AgentMode;
  /** Topic patterns the driver watches. */
  topics: string[];
  maxInFlight?: number;
  /** How long agents may take to connect before the body runs with those that did, ms. */
  connectTimeoutMs: number;
  /** Profile the coordinator when the bench was given --profile. */
  profile?: boolean;
  /** Wait for the warm-up task to reach this state (it proves the watch is live). */
  warmup?: TaskEventState;
  /** Config file fields of the coordinator on top of the bench's. */
  config?: Record<string, unknown>;
}

/** Runs `body` with a fresh coordinator and fleet; everything is stopped afterwards. */
export async function withBaton<T>(ctx: BenchContext, options: BatonOptions, body: (b: Baton) => Promise<T>): Promise<T> {
  const coordinator = await startCoordinator({ pki: ctx.pki, ...(options.config ? { config: options.config } : {}), ...(options.profile && ctx.profileDir ? { profileDir: ctx.profileDir } : {}) });
  const fleet = new Fleet({ pki: ctx.pki, address: coordinator.address, mode: options.mode, ...(options.maxInFlight ? { maxInFlight: options.maxInFlight } : {}) });
  let driver: Driver | undefined;
  try {
    ctx.log(`  connecting ${options.agents} agents (bound ${options.connectTimeoutMs / 1000} s)`);
    const connect = await fleet.add(options.agents, options.connectTimeoutMs);
    ctx.log(`  ${connect.connected} agents connected in ${connect.seconds.toFixed(1)} s${connect.failed ? ` (${connect.failed} failed attempts, last: ${connect.lastError})` : ""}`);
    if (connect.connected === 0) throw new Error(`no agent connected: ${connect.lastError}`);
    driver = openDriver(ctx.pki, coordinator.address, options.topics);
    const d = driver;
    if (options.warmup) await warmUp(d, options.warmup, 120_000);
    const roles = (): Roles => ({ coordinator: [coordinator.pid], "agent processes": fleet.pids, "driver (bench)": [process.pid] });
    const result = await body({ coordinator, fleet, driver: d, connect, roles, measure: () => measureRoles(roles()) });
    // Figures counted from events are wrong if the watch ended: say so rather than report them.
    if (fleet.errors.length) throw new Error(`agent processes reported ${fleet.errors.length} error(s), the first: ${fleet.errors[0]}`);
    if (d.watch.error) throw new Error(`the event watch failed during the run: ${d.watch.error.message}`);
    if (d.watch.resumes) ctx.log(`  the event watch ended ${d.watch.resumes} time(s) (cut off as too slow, or dropped) and was resumed; ${d.watch.gaps} time(s) past the retained events`);
    return result;
  } catch (err) {
    for (const line of coordinator.errors()) ctx.log(`  coordinator log: ${line.slice(0, 2000)}`);
    throw err;
  } finally {
    driver?.close();
    await fleet.stop();
    await coordinator.stop();
  }
}
