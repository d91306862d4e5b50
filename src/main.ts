// The `baton` command: `bin/baton.js` runs this file as built in dist/, `npm run baton` from source.
import { runCli } from "./cli/index.js";

process.exitCode = await runCli(process.argv.slice(2));
