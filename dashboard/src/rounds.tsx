import type { Round } from "./model.js";
import { enumName } from "./model.js";

// The spec's protocol states in the order a round walks them.
const WALK = ["coordinating", "executing", "monitoring", "idle"];

function Walk(props: { state: string }) {
  const at = WALK.indexOf(props.state);
  return (
    <ol class="walk">
      {WALK.map((s, i) => (
        <li key={s} class={props.state === "error" ? (i === 0 ? "error" : "") : i < at ? "done" : i === at ? "current" : ""}>
          {s}
        </li>
      ))}
      {props.state === "error" ? <li class="error current">error</li> : null}
    </ol>
  );
}

/** Coordination rounds under way and the last finished ones, each walking the spec's states. */
export function Rounds(props: { rounds: Round[]; recent: Round[] }) {
  const all = [...props.rounds, ...props.recent.slice(0, 8)];
  if (all.length === 0) return <p class="muted">No coordination round yet.</p>;
  return (
    <table class="rounds">
      <thead>
        <tr>
          <th>round</th>
          <th>trigger</th>
          <th>states</th>
          <th>tasks</th>
          <th>agents</th>
        </tr>
      </thead>
      <tbody>
        {all.map((r) => {
          const state = enumName(r.state, "COORDINATION_STATE_");
          return (
            <tr key={r.roundId} data-round={r.roundId} data-state={state}>
              <td class="id">{r.roundId.slice(0, 8)}</td>
              <td>{r.trigger}</td>
              <td>
                <Walk state={state} />
              </td>
              <td>{(r.taskIds ?? []).length}</td>
              <td>{(r.agentIds ?? []).join(", ")}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
