import type { Agent } from "./model.js";
import { enumName } from "./model.js";
import { ago, labels } from "./format.js";

/** The agents: state, capabilities, labels, in-flight against the cap, breaker, last heartbeat, utilization; drain. */
export function Agents(props: { agents: Agent[]; now: number; canDrain: boolean; onDrain: (id: string) => void }) {
  if (props.agents.length === 0) return <p class="muted">No agent has connected yet.</p>;
  return (
    <table class="agents">
      <thead>
        <tr>
          <th>agent</th>
          <th>state</th>
          <th>capabilities</th>
          <th>labels</th>
          <th>in flight</th>
          <th>breaker</th>
          <th>heard from</th>
          <th>utilization</th>
          <th />
        </tr>
      </thead>
      <tbody>
        {props.agents.map((a) => {
          const state = enumName(a.state, "AGENT_STATE_");
          const cap = a.maxInFlight ?? 0;
          const held = a.inFlight ?? 0;
          return (
            <tr key={a.agentId} data-agent={a.agentId} data-state={state}>
              <td class="id">{a.agentId}</td>
              <td>
                <span class={`badge ${state}`} title={a.stateReason || undefined}>
                  {state}
                </span>
              </td>
              <td>{(a.capabilities ?? []).join(", ")}</td>
              <td>{labels(a.labels)}</td>
              <td>
                <meter min={0} max={Math.max(cap, 1)} value={held} /> {held}/{cap}
              </td>
              <td>
                <span class={`badge breaker-${a.breaker ?? "closed"}`}>{a.breaker ?? "closed"}</span>
              </td>
              <td>{ago(a.lastSeen, props.now)}</td>
              <td>{a.utilization === null ? "–" : `${Math.round(a.utilization * 100)} %`}</td>
              <td>
                {props.canDrain && state === "online" ? (
                  <button type="button" data-action="drain" onClick={() => props.onDrain(a.agentId)}>
                    drain
                  </button>
                ) : null}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
