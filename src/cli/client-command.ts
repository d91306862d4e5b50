import type { Command } from "commander";
import type { Control } from "../../gen/baton/v1/control_pb.js";
import { Code, LEADER_TRAILER } from "../errors.js";
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
    let connection = connect(flags, options.env);
    // A follower of a replica set refuses before it does anything and names the leader: the command goes there, once.
    for (let followed = false; ; followed = true) {
      let leader: string | undefined;
      try {
        await fn({ control: connection.control, connection, format: outputFormat(flags.output), out: (t) => void process.stdout.write(t) }, ...(args.slice(0, -1) as A));
        return;
      } catch (err) {
        leader = leaderOf(err);
        if (followed || !leader || leader === connection.target.address) {
          if (typeof (err as { code?: unknown }).code === "number") throw new CallError((err as { code: number }).code, describeError(err, connection.target.address));
          throw err;
        }
      } finally {
        connection.close();
      }
      process.stderr.write(`baton: ${connection.target.address} is a follower; the leader is ${leader}\n`);
      connection = connect({ ...flags, address: leader }, options.env);
    }
  };
}

// The leader a follower's UNAVAILABLE names in its trailers, if any.
function leaderOf(err: unknown): string | undefined {
  const e = err as { code?: unknown; metadata?: { get(key: string): unknown[] } };
  if (e.code !== Code.UNAVAILABLE || typeof e.metadata?.get !== "function") return undefined;
  const value = e.metadata.get(LEADER_TRAILER)[0];
  return typeof value === "string" && value ? value : undefined;
}
