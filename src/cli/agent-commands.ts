import { COMMANDS } from "./command-table.js";
import { durationMs } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import { AgentState } from "../../gen/baton/v1/common_pb.js";
import { AgentSchema, CoordinationRoundSchema, GetAgentStatusResponseSchema, GetCoordinationResponseSchema, type Agent, type CoordinationRound, type GetAgentStatusResponse } from "../../gen/baton/v1/control_pb.js";
import { CoordinationState } from "../../gen/baton/v1/control_pb.js";
import { Code } from "../errors.js";
import { CallError, UsageError } from "./exit.js";
import { enumLabel, messageJson, render, timeCell, type Printable } from "./output.js";
import { withControl, type ClientCommandOptions } from "./client-command.js";

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** The table and JSON of agents. */
export function agentPrintable(agents: readonly Agent[], single = false): Printable<Agent> {
  return {
    items: agents,
    single,
    json: (a) => messageJson(AgentSchema, a),
    columns: [
      ["AGENT", (a) => a.agentId],
      ["STATE", (a) => enumLabel(AgentState, a.state)],
      ["IN FLIGHT", (a) => `${a.inFlight}/${a.maxInFlight}`],
      ["BREAKER", (a) => a.breaker],
      ["CAPABILITIES", (a) => a.capabilities.join(",")],
      ["RESOURCES", (a) => a.resources.map((r) => `${r.resourceId}(${r.kind}:${r.capacity})`).join(",")],
      ["LAST SEEN", (a) => timeCell(a.lastSeen)],
      ["SKEW", (a) => (a.clockSkew ? `${durationMs(a.clockSkew)}ms` : "")],
      ["REASON", (a) => a.stateReason],
    ],
  };
}

/** The table and JSON of rounds; `live` marks rounds still under way. */
export function roundPrintable(rounds: ReadonlyArray<CoordinationRound & { live?: boolean }>, single = false): Printable<CoordinationRound & { live?: boolean }> {
  return {
    items: rounds,
    single,
    json: (r) => messageJson(CoordinationRoundSchema, r),
    columns: [
      ["ROUND", (r) => r.roundId],
      ["STATE", (r) => enumLabel(CoordinationState, r.state)],
      ["LIVE", (r) => (r.live ? "yes" : "")],
      ["TRIGGER", (r) => r.trigger],
      ["TASKS", (r) => r.taskIds.join(",")],
      ["AGENTS", (r) => r.agentIds.join(",")],
      ["STARTED", (r) => timeCell(r.startedAt)],
    ],
  };
}

function parseStates(values: string[] | undefined): AgentState[] {
  return (values ?? []).flatMap((s) => s.split(",")).map((s) => {
    const v = AgentState[s.toUpperCase() as keyof typeof AgentState];
    if (typeof v !== "number" || v === AgentState.UNSPECIFIED) throw new UsageError(`--state must be online, draining, disconnected or offline, got ${JSON.stringify(s)}`);
    return v;
  });
}

/** Adds `baton agent ...` and `baton round ...`. */
export function addAgentCommands(program: Command, options: ClientCommandOptions): void {
  const read = options.readCommand;
  const agent = program.command("agent").description(COMMANDS.agent);
  read(agent.command("list").description("list the agents known, by id"))
    .option("--state <state>", "only agents in this state: online, draining, disconnected, offline (repeat)", collect)
    .action(withControl(options, async ({ control, format, out }, flags: { state?: string[] }) => {
      const res = await control.listAgents({ states: parseStates(flags.state) });
      out(render(format, agentPrintable(res.agents)));
    }));
  read(agent.command("get").argument("<agent-id>").description("show one agent")).action(withControl(options, async ({ control, format, out }, agentId: string) => {
    out(render(format, agentPrintable([(await control.getAgent({ agentId })).agent!], true)));
  }));
  read(agent.command("status").argument("<agent-id>").description("ask an agent for its status now, down its stream"))
    .option("--timeout-ms <ms>", "how long to wait for its answer (default: the server's)")
    .action(withControl(options, async ({ control, format, out }, agentId: string, flags: { timeoutMs?: string }) => {
      const timeoutMs = flags.timeoutMs === undefined ? 0 : Number(flags.timeoutMs);
      if (!Number.isInteger(timeoutMs) || timeoutMs < 0) throw new UsageError(`--timeout-ms must be a whole number, got ${JSON.stringify(flags.timeoutMs)}`);
      const res = await control.getAgentStatus({ agentId, timeoutMs });
      const printable: Printable<GetAgentStatusResponse> = {
        items: [res],
        single: true,
        json: (r) => messageJson(GetAgentStatusResponseSchema, r),
        columns: [
          ["AGENT", (r) => r.status?.sourceAgent ?? agentId],
          ["STATE", (r) => enumLabel(AgentState, r.status?.state ?? 0)],
          ["IN FLIGHT", (r) => String(r.status?.inFlight ?? 0)],
          ["ROUND TRIP", (r) => `${r.roundTripMs.toFixed(1)}ms`],
        ],
      };
      out(render(format, printable));
    }));
  read(agent.command("drain").argument("<agent-id>").description("give an agent no new work; it finishes what it has"))
    .option("--reason <text>", "why (the agent is told)")
    .option("--reconnect-to <host:port>", "where it should reconnect when done")
    .action(withControl(options, async ({ control, format, out }, agentId: string, flags: { reason?: string; reconnectTo?: string }) => {
      const res = await control.drainAgent({ agentId, reason: flags.reason ?? "", reconnectTo: flags.reconnectTo ?? "" });
      out(render(format, agentPrintable([res.agent!], true)));
    }));

  read(agent.command("undrain").argument("<agent-id>").description("take a draining agent back into service (it is told: Drain.withdrawn; one already gone is in service when it reconnects)"))
    .action(withControl(options, async ({ control, format, out }, agentId: string) => {
      const res = await control.undrainAgent({ agentId });
      out(render(format, agentPrintable([res.agent!], true)));
    }));

  const round = program.command("round").description(COMMANDS.round);
  read(round.command("list").description("rounds under way and the most recent finished ones")).action(withControl(options, async ({ control, format, out }) => {
    const res = await control.getCoordination({});
    if (format !== "table" && format !== "json") return out(render(format, { items: [res], single: true, json: (r) => messageJson(GetCoordinationResponseSchema, r), columns: [] }));
    out(render(format, roundPrintable([...res.rounds.map((r) => Object.assign(r, { live: true })), ...res.recent])));
  }));
  read(round.command("get").argument("<round-id>").description("one round, under way or recent")).action(withControl(options, async ({ control, format, out }, roundId: string) => {
    const res = await control.getCoordination({});
    const live = res.rounds.find((r) => r.roundId === roundId);
    const found = live ?? res.recent.find((r) => r.roundId === roundId);
    if (!found) throw new CallError(Code.NOT_FOUND, `NOT_FOUND: no round ${JSON.stringify(roundId)} among the ${res.rounds.length} under way and ${res.recent.length} recent (older rounds are not kept)`);
    out(render(format, roundPrintable([Object.assign(found, { live: Boolean(live) })], true)));
  }));
}
