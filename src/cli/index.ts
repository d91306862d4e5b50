export { runCli, buildProgram } from "./program.js";
export { serve, serveConfig, type ServeFlags } from "./serve.js";
export { certs, type CertsFlags } from "./certs.js";
export { journal, type JournalFlags } from "./journal.js";
export { EXIT, UsageError } from "./exit.js";
