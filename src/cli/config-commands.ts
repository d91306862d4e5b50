import type { Command } from "commander";
import type { ClientCommandOptions } from "./client-command.js";

/** Adds `baton config print|check|schema`. */
export function addConfigCommands(program: Command, _options: ClientCommandOptions): void {
  program.command("config").description("the effective configuration, a config file's check, the JSON Schema");
}
