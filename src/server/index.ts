export { BatonServer, loadServerCredentials, type BatonServerOptions, type ServerState } from "./baton-server.js";
