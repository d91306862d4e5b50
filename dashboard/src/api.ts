import type { ChangeEvent, Explanation, Pulse, Snapshot } from "./model.js";

/** The header every action carries (the server refuses actions without it). */
const ACTION_HEADER = "x-baton-dashboard";

/** What the event stream delivers. */
export interface StreamHandlers {
  snapshot(s: Snapshot): void;
  change(e: ChangeEvent): void;
  pulse(p: Pulse): void;
  status(live: "live" | "reconnecting" | "refused", error?: string): void;
}

/**
 * Opens the server's event stream. EventSource reconnects by itself and sends the last
 * event id it saw, so the server resumes from that cursor; nothing here polls.
 */
export function openStream(handlers: StreamHandlers): () => void {
  const source = new EventSource("api/events");
  source.addEventListener("snapshot", (e) => handlers.snapshot(JSON.parse((e as MessageEvent<string>).data) as Snapshot));
  source.addEventListener("change", (e) => handlers.change(JSON.parse((e as MessageEvent<string>).data) as ChangeEvent));
  source.addEventListener("pulse", (e) => handlers.pulse(JSON.parse((e as MessageEvent<string>).data) as Pulse));
  source.addEventListener("open", () => handlers.status("live"));
  source.addEventListener("error", () => {
    // CLOSED: the server answered with an error (refused); CONNECTING: the browser retries.
    if (source.readyState === EventSource.CLOSED) {
      // One request to read why (EventSource does not say); a stream that opens after all is not read.
      const abort = new AbortController();
      void fetch("api/events", { signal: abort.signal })
        .then(async (r) => {
          if (r.ok) abort.abort();
          return r.ok ? "the event stream closed" : (((await r.json().catch(() => ({}))) as { message?: string }).message ?? `HTTP ${r.status}`);
        })
        .catch(() => "the coordinator cannot be reached")
        .then((message) => handlers.status("refused", message));
    } else handlers.status("reconnecting");
  });
  return () => source.close();
}

async function answer<T>(res: Response): Promise<T> {
  const body = (await res.json().catch(() => ({}))) as T & { message?: string; code?: string };
  if (!res.ok) throw new Error(body.message ? `${body.code ?? res.status}: ${body.message}` : `HTTP ${res.status}`);
  return body;
}

/** Runs an action: cancel or resubmit a task, drain an agent. */
export async function act(kind: "tasks" | "agents", id: string, verb: "cancel" | "resubmit" | "drain"): Promise<void> {
  await answer(await fetch(`api/${kind}/${encodeURIComponent(id)}/${verb}`, { method: "POST", headers: { [ACTION_HEADER]: "1" } }));
}

/** Why a task waits (Control.ExplainTask). */
export async function explain(taskId: string): Promise<Explanation> {
  return answer<Explanation>(await fetch(`api/tasks/${encodeURIComponent(taskId)}/explain`));
}
