import { COMMANDS } from "./command-table.js";
import type { Command } from "commander";
import { withControl, type ClientCommandOptions } from "./client-command.js";
import { startLiveView } from "./watch/live.js";

/** Adds `baton watch`: the live view of agents, tasks (with progress bars) and rounds. */
export function addWatchCommand(program: Command, options: ClientCommandOptions): void {
  program
    .command("watch")
    .description(COMMANDS.watch)
    .option("--plain", "one line per event even on a terminal")
    .action(withControl(options, async ({ control, connection }, flags: { plain?: boolean }) => {
      const view = startLiveView(control, { title: `baton watch: ${connection.target.address}${connection.target.context ? ` (context ${connection.target.context})` : ""}`, tty: Boolean(process.stdout.isTTY) && !flags.plain });
      const stop = () => view.stop();
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      try {
        await view.done;
      } finally {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
      }
    }));
}
