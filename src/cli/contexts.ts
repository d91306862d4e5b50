import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { ConfigError } from "../config-errors.js";
import { didYouMean } from "../suggest.js";

/** A saved way to reach a coordinator, like a `nats context`. */
export interface CliContext {
  name: string;
  /** "host:port" of the coordinator (dial localhost, not 127.0.0.1: the certificate names it). */
  address: string;
  /** The CA bundle the coordinator's certificate must chain to. */
  ca: string;
  /** The operator certificate. */
  cert: string;
  /** Its private key. */
  key: string;
  /** Free text for `context list`. */
  description?: string;
}

/** $XDG_CONFIG_HOME/baton, or ~/.config/baton. */
export function configHome(env: Record<string, string | undefined>): string {
  return join(env.XDG_CONFIG_HOME || join(homedir(), ".config"), "baton");
}

const contextsDir = (env: Record<string, string | undefined>) => join(configHome(env), "contexts");
const selectedFile = (env: Record<string, string | undefined>) => join(configHome(env), "context.txt");

function checkName(name: string): void {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) throw new ConfigError(`context name ${JSON.stringify(name)} must be 1-64 letters, digits, ".", "_" or "-"`);
}

/** The contexts saved, sorted by name. */
export function listContexts(env: Record<string, string | undefined>): CliContext[] {
  const dir = contextsDir(env);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => readContext(join(dir, f), f.slice(0, -5)));
}

function readContext(path: string, name: string): CliContext {
  try {
    const value = JSON.parse(readFileSync(path, "utf8")) as Partial<CliContext>;
    for (const field of ["address", "ca", "cert", "key"] as const) if (typeof value[field] !== "string" || !value[field]) throw new Error(`${field} is missing`);
    return { ...(value as CliContext), name };
  } catch (err) {
    throw new ConfigError(`context ${name} (${path}) is not usable: ${(err as Error).message}; fix it or \`baton context remove ${name}\``);
  }
}

/** The context by name; a name not saved is a configuration error that lists the known ones. */
export function loadContext(name: string, env: Record<string, string | undefined>): CliContext {
  checkName(name);
  const path = join(contextsDir(env), `${name}.json`);
  if (!existsSync(path)) {
    const known = listContexts(env).map((c) => c.name);
    throw new ConfigError(`no context ${JSON.stringify(name)}${didYouMean(name, known)}; known: ${known.join(", ") || "none (add one with `baton context add`)"}`);
  }
  return readContext(path, name);
}

/** Saves a context; file paths are kept absolute so it works from any folder. */
export function saveContext(context: CliContext, env: Record<string, string | undefined>, cwd = process.cwd()): CliContext {
  checkName(context.name);
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(cwd, p));
  const saved: CliContext = { ...context, ca: abs(context.ca), cert: abs(context.cert), key: abs(context.key) };
  for (const field of ["ca", "cert", "key"] as const) if (!existsSync(saved[field])) throw new ConfigError(`--${field} ${saved[field]} does not exist`);
  mkdirSync(contextsDir(env), { recursive: true, mode: 0o700 });
  const { name, ...fields } = saved;
  writeFileSync(join(contextsDir(env), `${name}.json`), `${JSON.stringify(fields, null, 2)}\n`, { mode: 0o600 });
  return saved;
}

/** Makes `name` the context used when neither --context nor BATON_CONTEXT names one. */
export function selectContext(name: string, env: Record<string, string | undefined>): CliContext {
  const context = loadContext(name, env);
  mkdirSync(configHome(env), { recursive: true, mode: 0o700 });
  writeFileSync(selectedFile(env), `${name}\n`);
  return context;
}

/** The selected context's name, if one is. */
export function selectedContext(env: Record<string, string | undefined>): string | undefined {
  try {
    return readFileSync(selectedFile(env), "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Removes a context (and the selection, if it was selected). */
export function removeContext(name: string, env: Record<string, string | undefined>): void {
  loadContext(name, env);
  rmSync(join(contextsDir(env), `${name}.json`));
  if (selectedContext(env) === name) rmSync(selectedFile(env), { force: true });
}
