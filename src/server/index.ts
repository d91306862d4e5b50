export { BatonServer, type BatonServerOptions, type ServerState } from "./baton-server.js";
export { AccessControl } from "./access-control.js";
export { printStartupBanner, startupBanner } from "./banner.js";
