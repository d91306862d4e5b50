import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { ROOT, TSX, run } from "../helpers/process.js";
import { waitForAsync } from "../helpers/server.js";
import { cleanEnv, jsonLines } from "./cli-helpers.js";

// The built package, as `npm install` leaves it: dist/ from tsc (tsgo), run by bin/baton.js.
const BIN = `${ROOT}bin/baton.js`;
const built = (args: string[], timeoutMs = 90_000) => run(process.execPath, [BIN, ...args], { env: cleanEnv(), timeoutMs });

beforeAll(async () => {
  const out = await run(process.execPath, [`${ROOT}node_modules/typescript/bin/tsc`, "-p", "tsconfig.build.json"], { timeoutMs: 240_000 });
  expect(out.code, out.stdout + out.stderr).toBe(0);
}, 300_000);

const demoDirs = () => new Set(readdirSync(tmpdir()).filter((d) => d.startsWith("baton-demo-")));

describe("the built package", () => {
  it("bin/baton.js runs dist/: --version is the package's; start-up is timed", async () => {
    const started = process.hrtime.bigint();
    const out = await built(["--version"]);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout.trim()).toBe((JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")) as { version: string }).version);
    // A figure for the report, not an assertion (the machine is shared and loaded).
    process.stdout.write(`bin/baton.js --version took ${ms.toFixed(0)} ms\n`);
  });

  it("every command answers --help (exit 0, its usage), listed from its own completion script", async () => {
    const script = (await built(["completion", "bash"])).stdout;
    expect(script).toContain("complete -o default -F _baton_complete baton");
    expect(script).toMatch(/"task"\) words="submit get list cancel explain resubmit/);
    const paths = [...script.matchAll(/^ {4}"([^"]*)"\) words=/gm)].map((m) => m[1]!).filter(Boolean);
    expect(paths.length).toBeGreaterThan(25);
    for (let i = 0; i < paths.length; i += 4) {
      await Promise.all(
        paths.slice(i, i + 4).map(async (path) => {
          const out = await built([...path.split(" "), "--help"]);
          expect(out.code, `${path}: ${out.stderr}`).toBe(0);
          expect(out.stdout, path).toContain(`usage: baton ${path}`);
        }),
      );
    }
  });

  it("the exports map resolves baton, baton/agent and baton/certs to dist/ with types", async () => {
    const out = await run(process.execPath, ["--input-type=module", "-e", 'for (const f of ["baton", "baton/agent", "baton/certs"]) console.log(import.meta.resolve(f))'], { timeoutMs: 30_000 });
    expect(out.code, out.stderr).toBe(0);
    const urls = out.stdout.trim().split("\n");
    expect(urls.map((u) => u.replace(/^.*\/dist\//, "dist/"))).toEqual(["dist/src/index.js", "dist/src/agent/index.js", "dist/src/certs.js"]);
    for (const u of urls) expect(existsSync(new URL(u.replace(/\.js$/, ".d.ts")))).toBe(true);
  });

  it("the embedding example runs against dist/: a coordinator, an agent, a task to its end", async () => {
    const out = await run(process.execPath, ["--import", TSX, `${ROOT}examples/embed.ts`], { env: cleanEnv(), timeoutMs: 120_000 });
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toContain('task hello succeeded: {"echoed":{"greeting":"hi"}}');
    expect(out.stdout).toContain("stopped");
  });
});

describe("baton demo (built)", () => {
  it("runs to its report: every task succeeded, one agent killed and its work replanned, nothing left behind", async () => {
    const before = demoDirs();
    const out = await built(["demo", "--agents", "3", "--tasks", "8", "--work-ms", "400", "-o", "json"], 240_000);
    expect(out.code, out.stderr).toBe(0);
    const report = jsonLines(out.stdout).at(-1)!;
    expect(report).toMatchObject({ agents: 3, tasks: 8, unfinished: 0, states: { succeeded: 8 } });
    expect(report.coalitionTasks).toBeGreaterThan(0);
    expect(report.resourceTasks).toBeGreaterThan(0);
    expect(report.killed?.agent).toMatch(/^worker_/);
    // Whatever the killed agent held went to another: it needed another attempt.
    for (const id of report.killed.heldTasks as string[]) expect(report.replanned).toContain(id);
    expect([...demoDirs()].filter((d) => !before.has(d))).toEqual([]);
  }, 300_000);

  it("Ctrl-C ends it at once: its agents killed and its temp folder removed, exit 130", async () => {
    const before = demoDirs();
    const child = spawn(process.execPath, [BIN, "demo", "--agents", "3", "--tasks", "500", "--work-ms", "3000", "--plain"], { env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const exited = once(child, "exit");
    await waitForAsync(async () => out.includes("task.demo-001.") , 120_000, "the demo's first task event");
    const mine = [...demoDirs()].filter((d) => !before.has(d));
    expect(mine).toHaveLength(1);
    const dir = join(tmpdir(), mine[0]!);
    child.kill("SIGINT");
    const [code] = (await exited) as [number | null];
    expect(code, out.slice(-2000)).toBe(130);
    expect(existsSync(dir)).toBe(false);
    // No agent process of this demo is left (each names the demo's certificate folder in its argv).
    const left = readdirSync("/proc").filter((p) => /^\d+$/.test(p)).filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, "utf8").includes(dir);
      } catch {
        return false;
      }
    });
    expect(left).toEqual([]);
  }, 300_000);
});
