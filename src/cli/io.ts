import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Prints lines to stdout. */
export function print(lines: readonly string[]): void {
  for (const line of lines) process.stdout.write(`${line}\n`);
}

/** commander's camelCase option names back to the flags' kebab-case ("trustDomain" -> "trust-domain"). */
export function kebabKeys(opts: Record<string, unknown>): Record<string, string | boolean | undefined> {
  return Object.fromEntries(Object.entries(opts).map(([k, v]) => [k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), v as string | boolean | undefined]));
}

/** The package's own package.json (from src/ or dist/src/: the nearest one up). */
export function packageInfo(): { name: string; version: string; root: string } {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = join(dir, "package.json");
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, "utf8")) as { name: string; version: string };
      return { name: pkg.name, version: pkg.version, root: dir };
    }
    const up = dirname(dir);
    if (up === dir) return { name: "baton", version: "0.0.0", root: dir };
    dir = up;
  }
}
