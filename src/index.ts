// The `baton` package: a coordinator embedded in your own process.
//
//   import { createCoordinator } from "baton";
//   const coordinator = createCoordinator({ config: { listen: "127.0.0.1:0", tls: { devCerts: true } } });
//   const { address } = await coordinator.start();
//   ...
//   await coordinator.shutdown();
import { buildConfig, type BatonConfig, type ConfigOverrides } from "./config.js";
import { createLogger, type Logger } from "./logging.js";
import { Control } from "../gen/baton/v1/control_pb.js";
import { clientChannelOptions, clientCredentials, createChannel, createClient, serverCredentials, type ServiceClient, type TlsMaterial } from "./rpc/index.js";
import { BatonServer } from "./server/index.js";
import { prepareDevelopmentFiles } from "./cli/serve.js";

export { buildConfig, configSchema, ConfigError, type BatonConfig, type ConfigOverrides } from "./config.js";
export { BatonError, Code } from "./errors.js";
export type { Logger } from "./logging.js";
export type { TlsMaterial, CallOptions } from "./rpc/index.js";
export { TaskState, type Task, type TaskSpec } from "../gen/baton/v1/control_pb.js";

/** What an embedded coordinator is made from; everything is optional. */
export interface CoordinatorOptions {
  /** Settings over the defaults, as in a config file (see `baton config schema`). */
  config?: ConfigOverrides;
  /** A pino logger; default JSON lines on stdout at config.log.level. */
  logger?: Logger;
  /** The server's CA, certificate and key in memory, instead of the files config.tls names. */
  tls?: TlsMaterial;
}

/** A coordinator in this process: the same server `baton serve` runs (Control, agent sessions, Resource Manager, Performance Monitor, health). */
export interface EmbeddedCoordinator {
  /** The effective configuration. */
  readonly config: BatonConfig;
  /** Loads the journal, binds and serves; resolves with the bound port and "localhost:<port>" (dial localhost: the certificate names it). */
  start(): Promise<{ port: number; address: string }>;
  /** Stops taking calls, closes agent sessions, waits up to graceMs (default shutdownGraceMs) for calls to end, then forces. */
  shutdown(options?: { graceMs?: number }): Promise<void>;
  /** The bound port (0 before start). */
  readonly port: number;
}

/** Creates a coordinator; nothing is opened until start(). A bad setting throws ConfigError here, naming it. */
export function createCoordinator(options: CoordinatorOptions = {}): EmbeddedCoordinator {
  const config = buildConfig(options.config ?? {});
  const logger = options.logger ?? createLogger({ level: config.log.level, base: { coordinator_id: config.coordinatorId } });
  const server = new BatonServer({ config, logger });
  return {
    config,
    async start() {
      if (!options.tls) await prepareDevelopmentFiles(config, logger);
      const port = await server.start(options.tls ? serverCredentials(options.tls) : undefined);
      return { port, address: `localhost:${port}` };
    },
    shutdown: (o = {}) => server.shutdown(o),
    get port() {
      return server.port;
    },
  };
}

/** A Control client (submit, get, list, cancel tasks; agents; rounds; events) as an operator or submitter. */
export interface ControlConnection {
  control: ServiceClient<typeof Control>;
  close(): void;
}

/** Dials a coordinator's Control service over mutual TLS with the given identity (an operator's certificate). */
export function connectControl(options: { address: string; tls: TlsMaterial }): ControlConnection {
  const channel = createChannel(options.address, clientCredentials(options.tls), clientChannelOptions());
  return { control: createClient(Control, channel), close: () => channel.close() };
}
