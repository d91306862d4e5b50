import { COMMANDS } from "./command-table.js";
import type { Command } from "commander";
import { stringify as toYaml } from "yaml";
import { configFromFile, configSchema, resolveConfig, settingsList, type BatonConfig } from "../config.js";
import type { ClientCommandOptions } from "./client-command.js";
import { addOutputOption } from "./client-command.js";
import { didYouMean } from "../suggest.js";
import { kebabKeys } from "./io.js";
import { outputFormat, table } from "./output.js";
import { resolveServeConfig, type ServeFlags } from "./serve.js";
import { addServeFlags } from "./server-commands.js";

function valueAt(config: BatonConfig, path: string): unknown {
  return path.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], config);
}

/** The configuration with its secrets replaced by whether they are set. */
function redacted(config: BatonConfig): BatonConfig {
  const copy = structuredClone(config);
  for (const [path, leaf] of settingsList()) {
    if (!leaf.secret) continue;
    const parts = path.split(".");
    const parent = parts.slice(0, -1).reduce<Record<string, unknown>>((o, k) => o[k] as Record<string, unknown>, copy as unknown as Record<string, unknown>);
    if (parent[parts.at(-1)!]) parent[parts.at(-1)!] = "(set)";
  }
  return copy;
}

// BATON_* variables that are not settings but are read elsewhere (the CLI's connection, the config file, tests).
const OTHER_VARIABLES = new Set(["BATON_CONFIG", "BATON_CONTEXT", "BATON_ADDRESS", "BATON_CA", "BATON_CERT", "BATON_KEY", "BATON_TEST_LOG"]);

/** A warning for each BATON_* variable that sets nothing, with the closest setting's variable. */
function strayVariables(env: Record<string, string | undefined>): string[] {
  const known = settingsList().flatMap(([, leaf]) => (leaf.env ? [leaf.env] : []));
  return Object.keys(env)
    .filter((k) => k.startsWith("BATON_") && !known.includes(k) && !OTHER_VARIABLES.has(k))
    .map((k) => `baton: warning: ${k} is not a setting's variable, so it changes nothing${didYouMean(k, known)}`);
}

/** Adds `baton config print`, `config check FILE` and `config schema`. */
export function addConfigCommands(program: Command, options: ClientCommandOptions): void {
  const config = program.command("config").description(COMMANDS.config);
  addOutputOption(addServeFlags(config.command("print").description("the configuration `baton serve` would run with (same flags, BATON_* and file), and where each value came from: default, file, env or flag")))
    .option("--changed", "only the settings not at their default")
    .action((opts: Record<string, unknown>) => {
      for (const w of strayVariables(options.env)) process.stderr.write(`${w}\n`);
      const { config: effective, origin } = resolveServeConfig(kebabKeys(opts) as ServeFlags, options.env);
      const shown = redacted(effective);
      const rows = settingsList()
        .map(([path]) => ({ path, value: valueAt(shown, path), source: origin[path] ?? "default" }))
        .filter((r) => !opts.changed || !r.source.startsWith("default"));
      const format = outputFormat(opts.output as string | undefined);
      // --changed narrows JSON and YAML to the same rows as the table.
      const data = opts.changed ? { settings: rows } : { config: shown, origin };
      if (format === "json") process.stdout.write(`${JSON.stringify(data)}\n`);
      else if (format === "yaml") process.stdout.write(toYaml(data));
      else process.stdout.write(table(rows, [["SETTING", (r) => r.path], ["VALUE", (r) => JSON.stringify(r.value)], ["FROM", (r) => r.source]]));
    });
  config
    .command("check")
    .argument("<file>", "a JSON config file")
    .description("check a config file on its own (types, bounds, unknown settings, the checks across settings); exit 0 when `baton serve --config FILE` would accept it, 78 naming the setting otherwise")
    .action((file: string) => {
      const overrides = configFromFile(file);
      resolveConfig([{ source: "file", file, overrides }]);
      const set = settingsList().filter(([path]) => path.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], overrides) !== undefined);
      process.stdout.write(`ok: ${file} is a valid baton configuration (${set.length} settings set, the rest at their defaults)\n`);
    });
  config
    .command("schema")
    .description("print the JSON Schema of the config file (derived from the settings table in src/config-settings.ts); point your editor's $schema at it")
    .action(() => {
      process.stdout.write(`${JSON.stringify(configSchema(), null, 2)}\n`);
    });
}
