import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { dirname, extname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { SECURITY_HEADERS } from "./http-answers.js";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".map": "application/json; charset=utf-8",
  ".json": "application/json; charset=utf-8",
};

/** Where `npm run build:dashboard` writes the page: dashboard/dist in the package, found from this module whether it runs from src/ or a built dist/. */
export function defaultStaticDir(from: string = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === "baton") return join(dir, "dashboard", "dist");
      } catch {
        // Not ours; keep looking up.
      }
    }
    if (dirname(dir) === dir) return join(from, "dashboard", "dist");
  }
}

/** The built page's files, read once into memory: nothing is fetched or built at run time. */
export interface StaticFiles {
  /** Answers a path under the dashboard ("" is index.html); false when there is no such file. */
  serve(path: string, res: ServerResponse): boolean;
  /** Whether the page was built. */
  readonly built: boolean;
}

function readTree(root: string): Map<string, { body: Buffer; type: string }> {
  const files = new Map<string, { body: Buffer; type: string }>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const full = join(dir, name);
      if (statSync(full).isDirectory()) walk(full);
      else files.set(relative(root, full).split(sep).join("/"), { body: readFileSync(full), type: TYPES[extname(name)] ?? "application/octet-stream" });
    }
  };
  if (existsSync(join(root, "index.html"))) walk(root);
  return files;
}

/** The page's files from `dir`; read again on a request while the page is not built yet. */
export function createStaticFiles(dir: string): StaticFiles {
  let files = readTree(dir);
  return {
    get built() {
      return files.size > 0;
    },
    serve(path, res) {
      if (files.size === 0) files = readTree(dir);
      const file = files.get(path || "index.html");
      if (!file) return false;
      res.writeHead(200, { ...SECURITY_HEADERS, "content-type": file.type, "content-length": file.body.length });
      res.end(file.body);
      return true;
    },
  };
}
