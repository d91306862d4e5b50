import { readFileSync } from "node:fs";
import { ConfigError } from "./config-errors.js";
import { settingAt, settingsList, SETTINGS, type ConfigOf, type Group, type Leaf, type Node } from "./config-settings.js";
import { validateConfig } from "./config-validate.js";
import { didYouMean } from "./suggest.js";

export { ConfigError, isLoopbackHost, parseListen } from "./config-errors.js";
export { configSchema } from "./config-schema.js";
export { LOG_LEVELS, SETTINGS, settingsList, type Leaf as Setting } from "./config-settings.js";

/** The whole configuration of a baton process: one typed object, derived from the settings table (src/config-settings.ts), where every field is documented with its unit and default. */
export type BatonConfig = ConfigOf<typeof SETTINGS>;

/** A partial configuration, as a file, the environment or flags give it. */
export type ConfigOverrides = {
  [K in keyof BatonConfig]?: BatonConfig[K] extends object ? Partial<BatonConfig[K]> : BatonConfig[K];
};

function defaultsOf(node: Node): unknown {
  if (node.leaf) return structuredClone(node.default);
  return Object.fromEntries(Object.entries(node.children).map(([k, child]) => [k, defaultsOf(child)]));
}

/** The embedded defaults: one process, development certificates in ./certs. */
export function defaultConfig(): BatonConfig {
  return defaultsOf(SETTINGS) as BatonConfig;
}

function parseValue(raw: string, leaf: Leaf<unknown>, source: string): unknown {
  switch (leaf.kind) {
    case "list":
      return raw.split(",").map((v) => v.trim()).filter(Boolean);
    case "bool":
      if (/^(1|true|yes|on)$/i.test(raw)) return true;
      if (/^(0|false|no|off)$/i.test(raw)) return false;
      throw new ConfigError(`${source}: expected true or false, got ${JSON.stringify(raw)}`);
    case "int":
      if (!/^\d+$/.test(raw)) throw new ConfigError(`${source}: expected a whole number, got ${JSON.stringify(raw)}`);
      return Number(raw);
    case "number":
      if (!/^\d+(\.\d+)?$/.test(raw)) throw new ConfigError(`${source}: expected a number, got ${JSON.stringify(raw)}`);
      return Number(raw);
    default:
      return raw;
  }
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split(".");
  let node = target;
  for (const part of parts.slice(0, -1)) {
    node[part] ??= {};
    node = node[part] as Record<string, unknown>;
  }
  node[parts.at(-1)!] = value;
}

/** Overrides from BATON_* environment variables. */
export function configFromEnv(env: Record<string, string | undefined>): ConfigOverrides {
  const out: Record<string, unknown> = {};
  for (const [path, leaf] of settingsList()) {
    if (!leaf.env) continue;
    const raw = env[leaf.env];
    if (raw === undefined || (raw === "" && !leaf.emptyIsValue)) continue;
    setPath(out, path, parseValue(raw, leaf, leaf.env));
  }
  return out as ConfigOverrides;
}

/** Every way to set a configuration path, for error messages: "--listen / BATON_LISTEN / listen in the config file". */
export function whereToSet(path: string): string {
  const leaf = settingAt(path);
  return [leaf?.flag, leaf?.env, `${path} in the config file`].filter(Boolean).join(" / ");
}

/** Overrides from a JSON file shaped like BatonConfig. */
export function configFromFile(path: string): ConfigOverrides {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("not an object");
    return value as ConfigOverrides;
  } catch (err) {
    throw new ConfigError(`config file ${path} is not a JSON object: ${(err as Error).message}`);
  }
}

/** One layer over the defaults and where it came from: "file baton.json", "env", "flag", or any name. */
export interface ConfigLayer {
  source: "file" | "env" | "flag" | string;
  /** For a file: its path. */
  file?: string;
  overrides: ConfigOverrides;
}

/** The effective configuration and, for every setting, where its value came from ("default", "file baton.json", "env BATON_LISTEN", "flag --listen"). */
export interface ResolvedConfig {
  config: BatonConfig;
  origin: Record<string, string>;
}

function originOf(layer: ConfigLayer, path: string, leaf: Leaf<unknown>): string {
  if (layer.source === "file") return `file ${layer.file ?? ""}`.trim();
  if (layer.source === "env") return `env ${leaf.env ?? ""}`.trim();
  if (layer.source === "flag") return `flag ${leaf.flag ?? ""}`.trim();
  return layer.source;
}

const describeType = (leaf: Leaf<unknown>) => (leaf.kind === "int" || leaf.kind === "number" ? "number" : leaf.kind === "bool" ? "boolean" : "string");

function merge(base: Record<string, unknown>, over: Record<string, unknown>, node: Group<Record<string, Node>>, path: string, layer: ConfigLayer, origin: Record<string, string>): void {
  for (const [key, value] of Object.entries(over)) {
    const where = path ? `${path}.${key}` : key;
    const child = node.children[key];
    if (!child) {
      const known = Object.keys(node.children);
      const hint = didYouMean(key, known).replace(/did you mean (\S+)\?/, (_, k: string) => `did you mean ${path ? `${path}.` : ""}${k}?`);
      throw new ConfigError(`unknown setting ${where}${hint}`);
    }
    if (!child.leaf) {
      if (typeof value !== "object" || value === null || Array.isArray(value)) throw new ConfigError(`${where} must be an object`);
      merge(base[key] as Record<string, unknown>, value as Record<string, unknown>, child, where, layer, origin);
      continue;
    }
    if (child.kind === "list" || child.kind === "records") {
      if (!Array.isArray(value)) throw new ConfigError(`${where} must be a list`);
      if (child.kind === "list" && value.some((v) => typeof v !== "string")) throw new ConfigError(`${where} must be a list of strings`);
    } else if (typeof value !== describeType(child)) {
      throw new ConfigError(`${where} must be a ${describeType(child)}, got ${JSON.stringify(value)}`);
    }
    base[key] = value;
    origin[where] = originOf(layer, where, child);
  }
}

const or = (values: readonly string[]) => {
  const quoted = values.map((v) => JSON.stringify(v));
  return quoted.length > 1 ? `${quoted.slice(0, -1).join(", ")} or ${quoted.at(-1)}` : quoted.join("");
};

/** Checks one setting against its type and bounds in the table. */
function checkSetting(path: string, leaf: Leaf<unknown>, value: unknown): void {
  if (leaf.kind === "enum" && !leaf.values!.includes(value as string)) throw new ConfigError(`${path} must be ${or(leaf.values!)}, got ${JSON.stringify(value)}`);
  if (leaf.kind !== "int" && leaf.kind !== "number") return;
  const v = value as number;
  const whole = leaf.kind === "int";
  const min = leaf.min ?? -Infinity;
  const max = leaf.max ?? Infinity;
  if ((whole ? Number.isInteger(v) : Number.isFinite(v)) && v >= min && v <= max) return;
  const note = leaf.boundNote ? ` (${leaf.boundNote})` : "";
  const kind = whole ? "whole number" : "number";
  if (max !== Infinity) throw new ConfigError(`${path} must be a ${kind} from ${min} to ${max}${note}, got ${v}`);
  if (min === 1 && whole) throw new ConfigError(`${path} must be a positive whole number, got ${v}`);
  if (min === 0) throw new ConfigError(`${path} must be 0 or more, got ${v}`);
  throw new ConfigError(`${path} must be at least ${min}${note}, got ${v}`);
}

/** Defaults, then each layer in order; every setting checked against the table, then the checks across settings. */
export function resolveConfig(layers: readonly ConfigLayer[]): ResolvedConfig {
  const config = defaultConfig();
  const origin: Record<string, string> = {};
  for (const layer of layers) merge(config as unknown as Record<string, unknown>, layer.overrides as Record<string, unknown>, SETTINGS, "", layer, origin);
  const dir = config.tls.certsDir;
  // Files not named default to the certificate folder; their origin says so.
  const derive = (path: string, current: string, value: string): string => {
    if (current) return current;
    origin[path] = `default (${value.startsWith(dir) ? "tls.certsDir" : "derived"})`;
    return value;
  };
  config.tls.caFile = derive("tls.caFile", config.tls.caFile, `${dir}/ca.pem`);
  config.tls.certFile = derive("tls.certFile", config.tls.certFile, `${dir}/coordinator.pem`);
  config.tls.keyFile = derive("tls.keyFile", config.tls.keyFile, `${dir}/coordinator.key`);
  config.tls.revokedFile = derive("tls.revokedFile", config.tls.revokedFile, `${dir}/revoked.json`);
  config.store.keyFile = derive("store.keyFile", config.store.keyFile, `${dir}/journal.key`);
  for (const [path, leaf] of settingsList()) {
    origin[path] ??= "default";
    checkSetting(path, leaf, path.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], config));
  }
  validateConfig(config);
  return { config, origin };
}

/** Defaults, then each layer in order (file, environment, flags); validated. */
export function buildConfig(...layers: ConfigOverrides[]): BatonConfig {
  return resolveConfig(layers.map((overrides, i) => ({ source: `layer ${i + 1}`, overrides }))).config;
}
