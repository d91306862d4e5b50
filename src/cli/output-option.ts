import { Option, type Command } from "commander";

/** The formats -o takes. */
export const OUTPUT_FORMATS = ["table", "json", "yaml"] as const;

/** -o on a command that prints what it read. */
export function addOutputOption(cmd: Command): Command {
  return cmd.addOption(new Option("-o, --output <format>", "table, json (one JSON object a line) or yaml; default: table on a terminal, json when piped").choices(OUTPUT_FORMATS));
}

