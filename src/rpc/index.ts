import { installFastUtf8 } from "./utf8.js";

// Every process that speaks baton's protocol (server, SDK, CLI) loads this module first:
// protobuf-es encodes short ASCII strings faster from here on (same bytes; see utf8.ts).
installFastUtf8();

export { adaptService, decodeRequest, type AdaptedService, type AdapterOptions, type MethodImpl, type ServiceImpl } from "./server-adapter.js";
export { createChannel, createClient, type CallOptions, type Channel, type ClientMethod, type ServiceClient } from "./client-adapter.js";
export { CORRELATION_HEADER, type HandlerContext, type PeerInfo } from "./context.js";
export { assertValid, findViolation } from "./validate.js";
export { encodeBinary } from "./fast-binary.js";
export { decodeBinary } from "./fast-decode.js";
export { timestampAt } from "./timestamps.js";
export { clientChannelOptions, serverChannelOptions, DEFAULT_TRANSPORT_LIMITS, type TransportLimits } from "./channel-options.js";
export { ConnectionGuard, DEFAULT_CONNECTION_LIMITS, type ConnectionGuardOptions, type ConnectionLimits, type ConnectionRefusal } from "./connection-guard.js";
export { addReflection } from "./reflection.js";
export { createHealth, ServingStatus, type HealthState } from "./health.js";
export { clientCredentials, serverCredentials, readTlsFiles, type TlsFiles, type TlsMaterial } from "./credentials.js";
export { guardInterceptor, headersOf, type CallGuard, type GuardedCall } from "./guard-interceptor.js";
export { reloadingServerCredentials, type ReloadingCredentials, type ReloadingOptions } from "./reloading-credentials.js";
export { containsRedacted, redact } from "./redact.js";
export { callMetricsInterceptor, type CallObserver, type GrpcType, type MethodObserver } from "./metrics-interceptor.js";
