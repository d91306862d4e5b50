import { COMMANDS } from "./command-table.js";
import type { Command } from "commander";
import { UsageError } from "./exit.js";
import { addOutputOption, type ClientCommandOptions } from "./client-command.js";
import { outputFormat } from "./output.js";

function count(value: string, flag: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`${flag} must be a whole number of at least ${min}, got ${JSON.stringify(value)}`);
  return n;
}

/** Adds `baton demo`: everything in one command, then a report. */
export function addDemoCommand(program: Command, _options: ClientCommandOptions): void {
  addOutputOption(
    program
      .command("demo")
      .description(COMMANDS.demo),
  )
    .option("--agents <n>", "agent processes (at least 3)", "5")
    .option("--tasks <n>", "tasks to submit", "30")
    .option("--work-ms <ms>", "about how long each task runs", "1500")
    .option("--no-kill", "do not kill an agent midway")
    .option("--plain", "one line per event even on a terminal")
    .option("--timeout-ms <ms>", "give up waiting for the tasks after this long", "180000")
    .action(async (flags: { agents: string; tasks: string; workMs: string; kill: boolean; plain?: boolean; timeoutMs: string; output?: string }) => {
      // The report prints as text unless -o asks for JSON or YAML.
      const format = flags.output === undefined ? "table" : outputFormat(flags.output);
      // With -o json or yaml stdout holds the report alone; the live view goes to stderr.
      const stream = format === "table" ? process.stdout : process.stderr;
      // The server and its dependencies load only when the demo runs.
      const { describeReport, runDemo } = await import("./demo/run-demo.js");
      const report = await runDemo({
        stream,
        agents: count(flags.agents, "--agents", 3),
        tasks: count(flags.tasks, "--tasks", 1),
        workMs: count(flags.workMs, "--work-ms", 1),
        kill: flags.kill,
        tty: Boolean(stream.isTTY) && !flags.plain,
        timeoutMs: count(flags.timeoutMs, "--timeout-ms", 1),
      });
      if (format === "json") process.stdout.write(`${JSON.stringify(report)}\n`);
      else if (format === "yaml") process.stdout.write((await import("yaml")).stringify(report));
      else process.stdout.write(describeReport(report));
      if (report.unfinished > 0) process.exitCode = 1;
    });
}
