export { serve, serveConfig, type ServeFlags } from "./serve.js";
export { certs, UsageError, type CertsFlags } from "./certs.js";
export { journal, type JournalFlags } from "./journal.js";
