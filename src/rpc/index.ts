export { adaptService, decodeRequest, type AdaptedService, type AdapterOptions, type MethodImpl, type ServiceImpl } from "./server-adapter.js";
export { createChannel, createClient, type CallOptions, type Channel, type ClientMethod, type ServiceClient } from "./client-adapter.js";
export { CORRELATION_HEADER, type HandlerContext, type PeerInfo } from "./context.js";
export { assertValid, findViolation } from "./validate.js";
export { clientChannelOptions, serverChannelOptions, DEFAULT_TRANSPORT_LIMITS, type TransportLimits } from "./channel-options.js";
export { addReflection } from "./reflection.js";
export { createHealth, ServingStatus, type HealthState } from "./health.js";
export { clientCredentials, serverCredentials, readTlsFiles, type TlsFiles, type TlsMaterial } from "./credentials.js";
