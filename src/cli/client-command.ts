import type { Command } from "commander";
import type { Control } from "../../gen/baton/v1/control_pb.js";
import type { ServiceClient } from "../rpc/index.js";
import { connect, type ConnectionFlags, type ControlConnection } from "./connection.js";
import { CallError, describeError } from "./exit.js";
import { outputFormat, type OutputFormat } from "./output.js";
export { addOutputOption } from "./output-option.js";

/** What a client command's action gets. */
export interface ClientContext {
  control: ServiceClient<typeof Control>;
  connection: ControlConnection;
  format: OutputFormat;
  /** Writes to stdout. */
  out(text: string): void;
}

/** How client commands are built (shared by the command groups). */
export interface ClientCommandOptions {
  /** Adds -o table|json|yaml to a read command. */
  readCommand(cmd: Command): Command;
  env: Record<string, string | undefined>;
}

/** An action that connects (flags, BATON_*, context), runs `fn`, and closes; a failed call is rethrown with the address in its message. */
export function withControl<A extends unknown[]>(options: ClientCommandOptions, fn: (ctx: ClientContext, ...args: A) => Promise<void>): (...args: unknown[]) => Promise<void> {
  return async (...args: unknown[]) => {
    const cmd = args.at(-1) as Command;
    const flags = cmd.optsWithGlobals() as ConnectionFlags & { output?: string };
    const connection = connect(flags, options.env);
    try {
      await fn({ control: connection.control, connection, format: outputFormat(flags.output), out: (t) => void process.stdout.write(t) }, ...(args.slice(0, -1) as A));
    } catch (err) {
      if (typeof (err as { code?: unknown }).code === "number") throw new CallError((err as { code: number }).code, describeError(err, connection.target.address));
      throw err;
    } finally {
      connection.close();
    }
  };
}
