import { createLogUpdate } from "log-update";
import type { Control } from "../../../gen/baton/v1/control_pb.js";
import type { ServiceClient } from "../../rpc/index.js";
import { WatchModel } from "./model.js";
import { progressBar, renderFrame } from "./render.js";

/** How the live view runs. */
export interface LiveViewOptions {
  title: string;
  /** Redraw in place (a terminal) or print one line per event (a pipe, a log). */
  tty: boolean;
  stream?: NodeJS.WriteStream;
  /** Most redraws a second. Default 10. */
  fps?: number;
  /** Called after each event is applied (the demo waits on it). */
  onEvent?: (model: WatchModel) => void;
}

/** A running view: its model, a promise that settles when the event stream ends, and stop(). */
export interface LiveView {
  model: WatchModel;
  /** Resolves once the snapshot is loaded and events flow. */
  ready: Promise<void>;
  done: Promise<void>;
  stop(): void;
}

/** Watches every event from now, after a snapshot of agents, open tasks and rounds, and draws it. */
export function startLiveView(control: ServiceClient<typeof Control>, options: LiveViewOptions): LiveView {
  const stream = options.stream ?? process.stdout;
  const model = new WatchModel();
  const abort = new AbortController();
  const draw = options.tty ? createLogUpdate(stream, { showCursor: false }) : undefined;
  let dirty = true;
  const frame = () => renderFrame(model, { title: options.title, columns: stream.columns || 100, rows: stream.rows || 40 });
  const timer = draw
    ? setInterval(() => {
        // Redraw at most fps times a second, and once a second anyway for the clock-free frame to stay fresh.
        if (!dirty) return;
        dirty = false;
        draw(frame());
      }, 1000 / (options.fps ?? 10))
    : undefined;
  let markReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  const done = (async () => {
    const [agents, tasks, rounds] = await Promise.all([control.listAgents({}), control.listTasks({ pageSize: 1000 }), control.getCoordination({})]);
    model.snapshot(agents.agents, tasks.tasks, rounds.rounds, rounds.recent);
    // A watch "from now" would miss what changes before the server has registered it: instead
    // the retained events are replayed, and those older than the snapshot are skipped. When
    // none are retained (nothing happened yet, or too much), it watches from now.
    let events = control.watchEvents({ topics: [], afterCursor: 1n }, { signal: abort.signal })[Symbol.asyncIterator]();
    const first = events.next().catch((err: unknown) => {
      const code = (err as { code?: number }).code;
      // INVALID_ARGUMENT: no event yet; OUT_OF_RANGE: the oldest are gone (the snapshot has their state).
      if (abort.signal.aborted || (code !== 3 && code !== 11)) throw err;
      events = control.watchEvents({ topics: [] }, { signal: abort.signal })[Symbol.asyncIterator]();
      return events.next();
    });
    if (draw) draw(frame());
    else stream.write(`${frame()}\n\n`);
    markReady();
    let next = first;
    try {
      for (;;) {
        const { value, done: ended } = await next;
        if (ended) break;
        if (value.event && model.apply(value.event)) {
          dirty = true;
          if (!draw) {
            const e = value.event;
            const pct = e.kind.case === "progress" ? ` ${progressBar(e.kind.value.metrics?.completionPercentage ?? 0)}` : "";
            stream.write(`${new Date().toISOString().slice(11, 23)}  ${e.topic}${pct}${e.reason ? `  (${e.reason})` : ""}\n`);
          }
        }
        options.onEvent?.(model);
        next = events.next();
      }
    } catch (err) {
      if (!abort.signal.aborted) throw err;
    } finally {
      if (timer) clearInterval(timer);
      if (draw) {
        draw(frame());
        draw.done();
      }
    }
  })();
  return {
    model,
    ready,
    done,
    stop: () => abort.abort(),
  };
}
