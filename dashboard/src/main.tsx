import { render } from "preact";
import { useEffect, useReducer, useState } from "preact/hooks";
import { act, openStream } from "./api.js";
import { Agents } from "./agents.js";
import { Charts } from "./charts.js";
import { enumName, type ChangeEvent, type Pulse, type Snapshot } from "./model.js";
import { Rounds } from "./rounds.js";
import { applyChange, applyPulse, applySnapshot, initialState, type ViewState } from "./store.js";
import { DeadLetters, Tasks } from "./tasks.js";

type Action = { kind: "snapshot"; s: Snapshot } | { kind: "change"; e: ChangeEvent } | { kind: "pulse"; p: Pulse } | { kind: "status"; live: ViewState["live"]; error: string } | { kind: "error"; error: string };

function reduce(state: ViewState, a: Action): ViewState {
  switch (a.kind) {
    case "snapshot":
      return applySnapshot(state, a.s);
    case "change":
      return applyChange(state, a.e);
    case "pulse":
      return applyPulse(state, a.p);
    case "status":
      return { ...state, live: a.live, error: a.error || (a.live === "live" ? "" : state.error) };
    case "error":
      return { ...state, error: a.error };
  }
}

function App() {
  const [state, dispatch] = useReducer(reduce, undefined, initialState);
  const [now, setNow] = useState(Date.now());
  useEffect(
    () =>
      openStream({
        snapshot: (s) => dispatch({ kind: "snapshot", s }),
        change: (e) => dispatch({ kind: "change", e }),
        pulse: (p) => dispatch({ kind: "pulse", p }),
        status: (live, error = "") => dispatch({ kind: "status", live, error }),
      }),
    [],
  );
  useEffect(() => {
    // Only the "3 s ago" texts move with it: no request.
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  const run = (kind: "tasks" | "agents", verb: "cancel" | "resubmit" | "drain") => (id: string) => {
    act(kind, id, verb).catch((err: Error) => dispatch({ kind: "error", error: `${verb} ${id}: ${err.message}` }));
  };
  const tasks = [...state.tasks.values()].reverse();
  const can = state.me?.can;
  const counts = Object.entries(state.counts).filter(([, n]) => n > 0);
  return (
    <>
      <header>
        <h1>baton</h1>
        <span class="coordinator">{state.coordinatorId}</span>
        <span class={`live ${state.live}`} data-testid="live">
          {state.live}
        </span>
        <span class="counts">
          {counts.map(([s, n]) => (
            <span key={s} class={`badge ${enumName(s, "TASK_STATE_")}`}>
              {enumName(s, "TASK_STATE_")} {n}
            </span>
          ))}
        </span>
        <span class="me">{state.me?.identity}</span>
      </header>
      {state.error ? (
        <div class="error-bar" role="alert" data-testid="error">
          {state.error}
        </div>
      ) : null}
      <main>
        <section>
          <h2>Metrics</h2>
          <Charts samples={state.samples} available={state.metricsShown} />
        </section>
        <section>
          <h2>Agents</h2>
          <Agents agents={state.agents} now={now} canDrain={!!can?.drain} onDrain={run("agents", "drain")} />
        </section>
        <section>
          <h2>Coordination rounds</h2>
          <Rounds rounds={state.rounds} recent={state.recent} />
        </section>
        <section>
          <h2>Tasks{state.more ? " (the first 500 open tasks, then those changed since)" : ""}</h2>
          <Tasks tasks={tasks} now={now} canCancel={!!can?.cancel} canExplain={!!can?.explain} onCancel={run("tasks", "cancel")} />
        </section>
        <section>
          <h2>Dead letters</h2>
          <DeadLetters tasks={tasks} now={now} canResubmit={!!can?.resubmit} onResubmit={run("tasks", "resubmit")} />
        </section>
      </main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
