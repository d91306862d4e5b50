import { useState } from "preact/hooks";
import type { Explanation, Task } from "./model.js";
import { enumName } from "./model.js";
import { ago } from "./format.js";
import { explain } from "./api.js";

const OPEN = new Set(["pending", "assigned", "running"]);

function progressOf(task: Task, state: string): number {
  if (state === "succeeded") return 100;
  return Math.max(0, Math.min(100, task.progress?.metrics?.completionPercentage ?? 0));
}

function Attempts(props: { task: Task }) {
  const attempts = props.task.attempts ?? [];
  if (attempts.length === 0) return <span class="muted">none yet</span>;
  return (
    <details>
      <summary>{attempts.length}</summary>
      <ol class="attempts">
        {attempts.map((a) => (
          <li key={a.attempt}>
            #{a.attempt} {(a.agents ?? []).join(", ") || "–"}: <b>{a.outcome || "open"}</b>
            {a.reason ? <span class="reason"> {a.reason}</span> : null}
          </li>
        ))}
      </ol>
    </details>
  );
}

function ExplainPanel(props: { explanation: Explanation | string }) {
  const e = props.explanation;
  if (typeof e === "string") return <div class="explain error">{e}</div>;
  return (
    <div class="explain" data-testid="explanation">
      <p class="summary">{e.summary}</p>
      {e.notBefore ? <p>retry delay until {new Date(e.notBefore).toLocaleTimeString()}</p> : null}
      <ul>
        {(e.agents ?? []).map((a) => (
          <li key={a.agentId} class={a.eligible ? "eligible" : ""}>
            <b>{a.agentId}</b> ({enumName(a.state, "AGENT_STATE_")}, {a.inFlight ?? 0}/{a.maxInFlight ?? 0}):{" "}
            {a.chosen ? `chosen: ${a.reason ?? ""}` : a.eligible ? "could take it now" : (a.obstacles ?? []).map((o) => o.detail || enumName(o.kind, "OBSTACLE_KIND_")).join("; ")}
          </li>
        ))}
      </ul>
    </div>
  );
}

function TaskRow(props: { task: Task; now: number; canCancel: boolean; canExplain: boolean; onCancel: (id: string) => void }) {
  const { task } = props;
  const id = task.spec?.taskId ?? "";
  const state = enumName(task.state, "TASK_STATE_");
  const pct = progressOf(task, state);
  const [explanation, setExplanation] = useState<Explanation | string | undefined>(undefined);
  const toggleExplain = () => {
    if (explanation) return setExplanation(undefined);
    explain(id).then(setExplanation, (err: Error) => setExplanation(err.message));
  };
  return (
    <>
      <tr data-task={id} data-state={state}>
        <td class="id">{id}</td>
        <td>
          <span class={`badge ${state}`}>{state}</span>
        </td>
        <td>{(task.assignedAgents ?? []).join(", ")}</td>
        <td class="progress">
          <progress max={100} value={pct} aria-label={`progress of ${id}`} data-progress={pct} /> {state === "succeeded" ? "done" : `${Math.round(pct)} %`}
        </td>
        <td>
          <Attempts task={task} />
        </td>
        <td class="reason">{task.reason}</td>
        <td>{ago(task.updatedAt, props.now)}</td>
        <td class="actions">
          {props.canExplain && OPEN.has(state) ? (
            <button type="button" data-action="explain" onClick={toggleExplain}>
              {state === "pending" ? "why waiting?" : "explain"}
            </button>
          ) : null}
          {props.canCancel && OPEN.has(state) ? (
            <button type="button" data-action="cancel" onClick={() => props.onCancel(id)}>
              cancel
            </button>
          ) : null}
        </td>
      </tr>
      {explanation ? (
        <tr class="explain-row">
          <td colSpan={8}>
            <ExplainPanel explanation={explanation} />
          </td>
        </tr>
      ) : null}
    </>
  );
}

/** Tasks: state, agents, live progress, attempts with their reasons; explain and cancel. */
export function Tasks(props: { tasks: Task[]; now: number; canCancel: boolean; canExplain: boolean; onCancel: (id: string) => void }) {
  const shown = props.tasks.filter((t) => enumName(t.state, "TASK_STATE_") !== "dead_lettered");
  if (shown.length === 0) return <p class="muted">No task yet.</p>;
  return (
    <table class="tasks">
      <thead>
        <tr>
          <th>task</th>
          <th>state</th>
          <th>agents</th>
          <th>progress</th>
          <th>attempts</th>
          <th>reason</th>
          <th>changed</th>
          <th />
        </tr>
      </thead>
      <tbody>
        {shown.map((t) => (
          <TaskRow key={t.spec?.taskId} task={t} now={props.now} canCancel={props.canCancel} canExplain={props.canExplain} onCancel={props.onCancel} />
        ))}
      </tbody>
    </table>
  );
}

/** Dead letters, each with its history and a resubmit button. */
export function DeadLetters(props: { tasks: Task[]; now: number; canResubmit: boolean; onResubmit: (id: string) => void }) {
  const dead = props.tasks.filter((t) => enumName(t.state, "TASK_STATE_") === "dead_lettered");
  if (dead.length === 0) return <p class="muted">No dead letter.</p>;
  return (
    <table class="dead-letters">
      <thead>
        <tr>
          <th>task</th>
          <th>attempts</th>
          <th>reason</th>
          <th>since</th>
          <th />
        </tr>
      </thead>
      <tbody>
        {dead.map((t) => {
          const id = t.spec?.taskId ?? "";
          return (
            <tr key={id} data-dead-letter={id}>
              <td class="id">{id}</td>
              <td>
                <Attempts task={t} />
              </td>
              <td class="reason">{t.reason}</td>
              <td>{ago(t.updatedAt, props.now)}</td>
              <td>
                {props.canResubmit ? (
                  <button type="button" data-action="resubmit" onClick={() => props.onResubmit(id)}>
                    resubmit
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
