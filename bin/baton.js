#!/usr/bin/env node
// The baton command: the built code in dist/ (`npm run build`; `npm install` and `npm ci` build it).
import { existsSync } from "node:fs";

const main = new URL("../dist/src/main.js", import.meta.url);
if (!existsSync(main)) {
  process.stderr.write("baton: dist/ is not built: run `npm run build` (npm install and npm ci build it), or `npm run baton -- ...` to run from source\n");
  process.exit(78);
}
await import(main.href);
