// The benchmarks of issue 11: baton's coordinator and agents in separate processes (mTLS,
// message signing, SQLite FULL, 127.0.0.1), beside raw grpc-js and RabbitMQ in the same run.
//   npm run bench                      every scenario (median of 3 runs), results in bench/results/
//   npm run bench -- latency round     some scenarios ("peers" = echo and rabbitmq)
//   npm run bench -- --smoke           each baton scenario for a few seconds (CI; writes nothing)
//   npm run bench -- throughput --profile   also a CPU profile of the coordinator, top functions
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "../test/helpers/process.js";
import { comparisons } from "./lib/compare.js";
import { benchPki } from "./lib/pki.js";
import { environment, markdownTable, textTable, writeResult, type ScenarioResult } from "./lib/results.js";
import type { BenchContext, Scenario } from "./lib/scenario.js";
import { echo } from "./scenarios/echo.js";
import { ingest } from "./scenarios/ingest.js";
import { latency } from "./scenarios/latency.js";
import { rabbitmq } from "./scenarios/rabbitmq.js";
import { round } from "./scenarios/round.js";
import { scale } from "./scenarios/scale.js";
import { throughput } from "./scenarios/throughput.js";

// Peers first: the baton scenarios' ratios and the bulk target need their figures.
const SCENARIOS: Scenario[] = [echo, rabbitmq, latency, throughput, ingest, round, scale];
const RESULTS = join(ROOT, "bench", "results");

const { values, positionals } = parseArgs({
  args: process.argv.slice(2),
  options: { smoke: { type: "boolean" }, profile: { type: "boolean" }, runs: { type: "string" }, help: { type: "boolean", short: "h" } },
  allowPositionals: true,
  strict: true,
});

if (values.help) {
  process.stdout.write(`usage: npm run bench -- [scenario ...] [--smoke] [--profile] [--runs n]\n\nscenarios (default: all; "peers" = echo rabbitmq):\n${SCENARIOS.map((s) => `  ${s.name.padEnd(11)} ${s.description}`).join("\n")}\n`);
  process.exit(0);
}

const smoke = values.smoke === true || process.env.BENCH_SMOKE === "1";
const names = positionals.flatMap((p) => (p === "peers" ? ["echo", "rabbitmq"] : p === "all" ? SCENARIOS.map((s) => s.name) : [p]));
const unknown = names.filter((n) => !SCENARIOS.some((s) => s.name === n));
if (unknown.length) {
  process.stderr.write(`unknown scenario ${unknown.join(", ")}: choose from ${SCENARIOS.map((s) => s.name).join(", ")}, peers, all\n`);
  process.exit(2);
}
const runs = smoke ? 1 : Number(values.runs ?? 3);
if (!Number.isInteger(runs) || runs < 1) {
  process.stderr.write(`--runs must be a whole number of at least 1, not ${values.runs}\n`);
  process.exit(2);
}
// The smoke checks that baton's scenarios still complete; the peers are not baton's to keep working.
const selected = SCENARIOS.filter((s) => (names.length ? names.includes(s.name) : !(smoke && s.peer)));
const full = !smoke && selected.length === SCENARIOS.length;

const log = (line: string) => process.stdout.write(`${line}\n`);
const started = performance.now();
const profileDir = values.profile ? join(ROOT, ".baton-tmp", "bench-profiles", new Date().toISOString().replace(/[:.]/g, "-")) : undefined;
if (profileDir) mkdirSync(profileDir, { recursive: true });
const ctx: BenchContext = {
  smoke,
  runs,
  profileDir,
  pki: await benchPki(Math.max(...selected.map((s) => s.agents(smoke))), log),
  log,
  earlier: new Map(),
};
log(`bench: ${selected.map((s) => s.name).join(", ")}; ${smoke ? "smoke (1 short run each, nothing written)" : `median of ${runs} run(s)`}; mTLS, signing on, SQLite FULL, 127.0.0.1`);

// Which code was measured: the commit, and whether the tree had changes on top of it.
const git = (...args: string[]) => spawnSync("git", args, { cwd: ROOT, encoding: "utf8" }).stdout?.trim() ?? "";
const code = { commit: git("rev-parse", "--short", "HEAD"), uncommitted_changes: git("status", "--porcelain", "--", "src", "gen").length > 0 };
// Read when each result is written: the load average says how busy the machine was meanwhile.
const env = () => environment({ runs, ...code });
const failures: string[] = [];
const results: ScenarioResult[] = [];
for (const scenario of selected) {
  log(`\n-- ${scenario.name}: ${scenario.description}`);
  const t0 = performance.now();
  try {
    const result = await scenario.run(ctx);
    ctx.earlier.set(scenario.name, result);
    results.push(result);
    log(textTable(`${scenario.name} (${((performance.now() - t0) / 1000).toFixed(0)} s)`, result.figures));
    for (const note of result.notes) log(`  note: ${note}`);
    if (!smoke && !result.skipped) log(`  wrote ${writeResult(RESULTS, result, env())}`);
  } catch (err) {
    failures.push(`${scenario.name}: ${(err as Error).stack ?? String(err)}`);
    log(`  ${scenario.name} FAILED: ${(err as Error).message}`);
  }
}

const compared = comparisons(ctx.earlier);
if (compared.figures.length) {
  log(textTable("baton against its peers, and targets that span scenarios", compared.figures));
  // Ratios need baton and both peers from one run: only a full run replaces the file.
  if (full) log(`  wrote ${writeResult(RESULTS, compared, env())}`);
  results.push(compared);
}
if (full) {
  const md = results.map((r) => `### ${r.scenario}\n\n${markdownTable(r.figures)}\n${r.notes.map((n) => `\n- ${n}`).join("")}\n`).join("\n");
  writeFileSync(join(RESULTS, "summary.md"), `<!-- npm run bench, ${new Date().toISOString()} -->\n\n${md}`);
  log(`  wrote ${join(RESULTS, "summary.md")} (paste it into bench/README.md)`);
}
log(`\nbench: ${selected.length - failures.length} of ${selected.length} scenarios completed in ${((performance.now() - started) / 1000).toFixed(0)} s`);
for (const f of failures) process.stderr.write(`\n${f}\n`);
process.exit(failures.length ? 1 : 0);
