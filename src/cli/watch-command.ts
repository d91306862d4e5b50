import type { Command } from "commander";
import type { ClientCommandOptions } from "./client-command.js";

/** Adds `baton watch`. */
export function addWatchCommand(program: Command, _options: ClientCommandOptions): void {
  program.command("watch").description("a live view of agents, tasks and rounds");
}
