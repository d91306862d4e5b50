import { readFileSync } from "node:fs";
import { Control } from "../../gen/baton/v1/control_pb.js";
import { ConfigError } from "../config-errors.js";
import { clientChannelOptions, clientCredentials, createChannel, createClient, type Channel, type ServiceClient } from "../rpc/index.js";
import { loadContext, selectedContext } from "./contexts.js";

/** The flags every client command takes (global options of the program). */
export interface ConnectionFlags {
  context?: string;
  address?: string;
  ca?: string;
  cert?: string;
  key?: string;
}

/** Where a command connects and with which files, and where each came from (for messages). */
export interface ConnectionTarget {
  address: string;
  ca: string;
  cert: string;
  key: string;
  /** The context used, if any. */
  context?: string;
}

/**
 * Flags first, then BATON_ADDRESS / BATON_CA / BATON_CERT / BATON_KEY, then the context
 * (--context, BATON_CONTEXT, or the one `baton context use` selected), then the development
 * defaults (`npm start` in this folder): localhost:50051 and certs/operator.pem.
 */
export function resolveTarget(flags: ConnectionFlags, env: Record<string, string | undefined>): ConnectionTarget {
  const name = flags.context ?? env.BATON_CONTEXT ?? selectedContext(env);
  const context = name ? loadContext(name, env) : undefined;
  const certs = env.BATON_CERTS_DIR || "certs";
  return {
    address: flags.address ?? env.BATON_ADDRESS ?? context?.address ?? "localhost:50051",
    ca: flags.ca ?? env.BATON_CA ?? context?.ca ?? `${certs}/ca.pem`,
    cert: flags.cert ?? env.BATON_CERT ?? context?.cert ?? `${certs}/operator.pem`,
    key: flags.key ?? env.BATON_KEY ?? context?.key ?? `${certs}/operator.key`,
    ...(context ? { context: context.name } : {}),
  };
}

function read(path: string, what: string, flag: string, target: ConnectionTarget): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const from = target.context ? `context ${target.context}` : "the defaults (no context selected)";
    throw new ConfigError(`cannot read the ${what} ${path} (from ${from}): ${(err as Error).message}; set it with ${flag}, or save a context with \`baton context add\``);
  }
}

/** A Control client over mTLS to the target; close the channel when done. */
export interface ControlConnection {
  target: ConnectionTarget;
  channel: Channel;
  control: ServiceClient<typeof Control>;
  close(): void;
}

/** Opens a channel to the coordinator the flags and environment name. */
export function connect(flags: ConnectionFlags, env: Record<string, string | undefined>): ControlConnection {
  const target = resolveTarget(flags, env);
  const credentials = clientCredentials({ ca: read(target.ca, "CA certificate", "--ca", target), cert: read(target.cert, "operator certificate", "--cert", target), key: read(target.key, "operator key", "--key", target) });
  const channel = createChannel(target.address, credentials, clientChannelOptions());
  return { target, channel, control: createClient(Control, channel), close: () => channel.close() };
}
