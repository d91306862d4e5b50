import { ConfigError, configFromEnv, configFromFile, resolveConfig, type BatonConfig, type ConfigLayer, type ConfigOverrides, type ResolvedConfig } from "../config.js";
import { createLogger, type Logger } from "../logging.js";
import { ensureDevelopmentCertificates } from "../security/index.js";
import { BatonServer, printStartupBanner } from "../server/index.js";
import { createJournalKeyFile } from "../store/index.js";

/** Flags of `baton serve`, already parsed. */
export interface ServeFlags {
  config?: string;
  listen?: string;
  /** "" turns the admin endpoint off. */
  "admin-listen"?: string;
  "certs-dir"?: string;
  "trust-domain"?: string;
  "dev-certs"?: boolean;
  "log-level"?: string;
  "coordinator-id"?: string;
  only?: string;
  "resource-manager"?: string;
  "performance-monitor"?: string;
  /** The journal, as a URL: "sqlite" or "sqlite:<dataDir>", "memory", "etcd://host:port[,host:port][/prefix]". */
  store?: string;
}

/**
 * The store a --store URL names, as configuration: "sqlite" or "sqlite:<dataDir>",
 * "memory", "etcd://host:port[,host:port...][/prefix/]" (a prefix keeps replica sets that
 * share an etcd apart). A ConfigError names what is wrong.
 */
export function storeFromUrl(url: string): NonNullable<ConfigOverrides["store"]> {
  if (url === "memory") return { kind: "memory" };
  if (url === "sqlite") return { kind: "sqlite" };
  if (url.startsWith("sqlite:")) {
    const dataDir = url.slice("sqlite:".length).replace(/^\/\//, "");
    if (!dataDir) throw new ConfigError(`--store ${url}: name the data directory ("sqlite:./data") or give just "sqlite"`);
    return { kind: "sqlite", dataDir };
  }
  const etcd = /^etcds?:\/\/([^/]+)(\/.*)?$/.exec(url);
  if (etcd) {
    const secure = url.startsWith("etcds:");
    const endpoints = etcd[1]!.split(",").map((h) => h.trim());
    if (endpoints.some((h) => !/^[^:\s]+:\d+$/.test(h))) throw new ConfigError(`--store ${url}: each etcd endpoint is host:port, comma-separated`);
    const path = etcd[2]?.replace(/^\//, "");
    return { kind: "etcd", etcd: { endpoints: endpoints.map((h) => `${secure ? "https" : "http"}://${h}`), ...(path ? { prefix: path.endsWith("/") ? path : `${path}/` } : {}) } } as NonNullable<ConfigOverrides["store"]>;
  }
  throw new ConfigError(`--store ${JSON.stringify(url)} is not a store: use "sqlite", "sqlite:<dataDir>", "memory" or "etcd://host:port[,host:port][/prefix]"`);
}

/** The configuration `baton serve` runs with: defaults, file, environment, flags. */
export function serveConfig(flags: ServeFlags, env: Record<string, string | undefined>): BatonConfig {
  return resolveServeConfig(flags, env).config;
}

/** The same, with where each value came from (`baton config print`). */
export function resolveServeConfig(flags: ServeFlags, env: Record<string, string | undefined>): ResolvedConfig {
  const fromFlags: ConfigOverrides = {};
  if (flags.listen) fromFlags.listen = flags.listen;
  // Unlike the other flags, "" is a value here: it turns the admin endpoint off.
  if (flags["admin-listen"] !== undefined) fromFlags.adminListen = flags["admin-listen"];
  if (flags["coordinator-id"]) fromFlags.coordinatorId = flags["coordinator-id"];
  const tls: NonNullable<ConfigOverrides["tls"]> = {};
  if (flags["certs-dir"]) tls.certsDir = flags["certs-dir"];
  if (flags["trust-domain"]) tls.trustDomain = flags["trust-domain"];
  if (flags["dev-certs"]) tls.devCerts = true;
  if (Object.keys(tls).length) fromFlags.tls = tls;
  if (flags["log-level"]) fromFlags.log = { level: flags["log-level"] as BatonConfig["log"]["level"] };
  const services: NonNullable<ConfigOverrides["services"]> = {};
  if (flags.only) services.only = flags.only as BatonConfig["services"]["only"];
  if (flags["resource-manager"]) services.resourceManager = flags["resource-manager"];
  if (flags["performance-monitor"]) services.performanceMonitor = flags["performance-monitor"];
  if (Object.keys(services).length) fromFlags.services = services;
  if (flags.store) fromFlags.store = storeFromUrl(flags.store);
  const file = flags.config ?? env.BATON_CONFIG;
  const layers: ConfigLayer[] = [];
  if (file) layers.push({ source: "file", file, overrides: configFromFile(file) });
  layers.push({ source: "env", overrides: configFromEnv(env) }, { source: "flag", overrides: fromFlags });
  return resolveConfig(layers);
}

/** Makes the development certificates and journal key when the configuration asks for them (tls.devCerts). */
export async function prepareDevelopmentFiles(config: BatonConfig, logger: Logger): Promise<void> {
  if (!config.tls.devCerts) return;
  const made = await ensureDevelopmentCertificates({ dir: config.tls.certsDir, trustDomain: config.tls.trustDomain });
  logger.info({ certs_dir: config.tls.certsDir, created: made.created }, "development certificates ready");
  // An etcd journal needs one too; replicas on one machine share the certificates folder, and so the key.
  if (config.store.kind !== "memory" && !config.store.key && createJournalKeyFile(config.store.keyFile)) logger.info({ key_file: config.store.keyFile }, "development journal key made");
}

/** Starts the server; returns it and its logger so the caller can wire signals. */
export async function serve(config: BatonConfig, logger: Logger = createLogger({ level: config.log.level, base: { coordinator_id: config.coordinatorId } })): Promise<{ server: BatonServer; logger: Logger }> {
  await prepareDevelopmentFiles(config, logger);
  // Loaded here, not at the top: the commands that only read the configuration start without it.
  const { BatonServer } = await import("../server/index.js");
  const server = new BatonServer({ config, logger });
  await server.start();
  printStartupBanner(server, config);
  return { server, logger };
}
