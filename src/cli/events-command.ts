import { COMMANDS } from "./command-table.js";
import type { Command } from "commander";
import { EventSchema, type Event } from "../../gen/baton/v1/control_pb.js";
import { UsageError } from "./exit.js";
import { messageJson, timeCell } from "./output.js";
import { stringify as toYaml } from "yaml";
import { withControl, type ClientCommandOptions } from "./client-command.js";

/** One event as a table line: cursor, time, topic, reason. */
export function eventLine(e: Event): string {
  return [String(e.cursor).padStart(6), timeCell(e.timestamp), e.topic, e.reason].filter(Boolean).join("  ");
}

/** Adds `baton events`: WatchEvents with topic patterns, resumable from a cursor. */
export function addEventsCommand(program: Command, options: ClientCommandOptions): void {
  options
    .readCommand(
      program
        .command("events")
        .argument("[topics...]", 'topic patterns: * one segment, # any number ("task.*.succeeded", "agent.#"); none: every event')
        .description(COMMANDS.events),
    )
    .option("--after <cursor>", "resume after this cursor (the last one you saw); default: from now")
    .option("--count <n>", "stop after this many events")
    .action(withControl(options, async ({ control, format, out }, topics: string[], flags: { after?: string; count?: string }) => {
      // Patterns are checked by the coordinator (INVALID_ARGUMENT names the bad one), one rule in one place.
      if (flags.after !== undefined && !/^\d+$/.test(flags.after)) throw new UsageError(`--after must be a cursor (a whole number), got ${JSON.stringify(flags.after)}`);
      const count = flags.count === undefined ? Infinity : Number(flags.count);
      if (!(count > 0)) throw new UsageError(`--count must be a positive whole number, got ${JSON.stringify(flags.count)}`);
      const abort = new AbortController();
      const stop = () => abort.abort();
      process.once("SIGINT", stop);
      let seen = 0;
      try {
        for await (const { event } of control.watchEvents({ topics, afterCursor: BigInt(flags.after ?? 0) }, { signal: abort.signal })) {
          if (!event) continue;
          if (format === "json") out(`${JSON.stringify(messageJson(EventSchema, event))}\n`);
          else if (format === "yaml") out(`---\n${toYaml(messageJson(EventSchema, event))}`);
          else out(`${eventLine(event)}\n`);
          if (++seen >= count) break;
        }
      } catch (err) {
        // Ctrl-C ends the stream as a CANCELLED call: that is the normal way out.
        if (!abort.signal.aborted) throw err;
      } finally {
        process.off("SIGINT", stop);
      }
    }));
}
