import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestPki } from "../helpers/pki.js";
import { ROOT, TSX, run } from "../helpers/process.js";

/** tsx start-up alone takes seconds on a loaded machine: a command still running after this is killed (code null). */
export const CLI_MS = 90_000;

/** `baton <args>` from source, as `npm run baton -- <args>` runs it; env on top of the test's, without any BATON_* or XDG of the machine. */
export function baton(args: string[], env: NodeJS.ProcessEnv = {}, cwd?: string) {
  return run(process.execPath, ["--import", TSX, `${ROOT}src/main.ts`, ...args], { env: { ...cleanEnv(), ...env }, timeoutMs: CLI_MS, ...(cwd ? { cwd } : {}) });
}

/** The test process's environment less anything that would pick a context or a coordinator. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("BATON_") && k !== "XDG_CONFIG_HOME") env[k] = v;
  // An empty config home: no context of the machine's user is picked up.
  return env;
}

/** An operator's CA, certificate and key written to files, and the flags that name them. */
export async function operatorFiles(pki: TestPki): Promise<{ dir: string; ca: string; cert: string; key: string; flags(address: string): string[] }> {
  const op = await pki.issue("operator", "operator");
  const dir = pki.writeFiles({ "ca.pem": pki.ca.certPem, "operator.pem": op.certPem, "operator.key": op.keyPem });
  const files = { dir, ca: join(dir, "ca.pem"), cert: join(dir, "operator.pem"), key: join(dir, "operator.key") };
  return { ...files, flags: (address) => ["--address", address, "--ca", files.ca, "--cert", files.cert, "--key", files.key] };
}

/** A temp folder removed by the returned cleanup. */
export function tempDir(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Parses JSON lines (what -o json prints). */
export function jsonLines(stdout: string): Array<Record<string, any>> {
  return stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>);
}
