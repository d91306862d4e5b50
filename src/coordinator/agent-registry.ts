import { AgentState } from "../../gen/baton/v1/common_pb.js";
import type { Hello } from "../../gen/baton/v1/session_pb.js";
import type { AgentSession } from "./agent-session.js";

/** What the coordinator remembers of an agent, session or not. */
export interface AgentEntry {
  agentId: string;
  state: AgentState;
  hello: Hello;
  identity: string;
  peer: string;
  session: AgentSession | undefined;
  connectedAt: Date;
  lastSeen: number;
  maxInFlight: number;
}

/** The agents known to this coordinator, by id. */
export class AgentRegistry {
  private readonly agents = new Map<string, AgentEntry>();

  /** Attaches a new session; returns the session it replaces, if any. */
  attach(session: AgentSession): AgentSession | undefined {
    const previous = this.agents.get(session.agentId)?.session;
    this.agents.set(session.agentId, {
      agentId: session.agentId,
      state: AgentState.ONLINE,
      hello: session.hello,
      identity: session.identity,
      peer: session.peer,
      session,
      connectedAt: session.connectedAt,
      lastSeen: session.lastSeen,
      maxInFlight: session.maxInFlight,
    });
    return previous && !previous.isClosed ? previous : undefined;
  }

  /** Detaches a session that ended; false when a newer session already replaced it. */
  detach(session: AgentSession): boolean {
    const entry = this.agents.get(session.agentId);
    if (!entry || entry.session !== session) return false;
    entry.session = undefined;
    entry.lastSeen = session.lastSeen;
    entry.state = AgentState.DISCONNECTED;
    return true;
  }

  /** One agent. */
  get(agentId: string): AgentEntry | undefined {
    const entry = this.agents.get(agentId);
    if (entry?.session) {
      entry.lastSeen = entry.session.lastSeen;
      entry.state = entry.session.state;
    }
    return entry;
  }

  /** Every agent, sorted by id. */
  list(): AgentEntry[] {
    return [...this.agents.keys()].sort().map((id) => this.get(id)!);
  }

  /** Open sessions. */
  sessions(): AgentSession[] {
    return [...this.agents.values()].flatMap((e) => (e.session ? [e.session] : []));
  }
}
