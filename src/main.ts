// The `baton` command: `bin/baton.js` runs this file as built in dist/, `npm run baton` from source.
// The CLI loads each command's modules only when that command runs (start-up time).
import { runCli } from "./cli/program.js";

process.exitCode = await runCli(process.argv.slice(2));
