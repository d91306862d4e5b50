// The echo peer's methods, whose messages are raw bytes: the least grpc-js can do per message.
import type { ServiceDefinition } from "@grpc/grpc-js";

const raw = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };

/** /bench.Echo/Echo: every message comes back as it went; /bench.Echo/Unary: one call, one answer. */
export const ECHO_SERVICE: ServiceDefinition = {
  echo: {
    path: "/bench.Echo/Echo",
    requestStream: true,
    responseStream: true,
    requestSerialize: raw.serialize,
    requestDeserialize: raw.deserialize,
    responseSerialize: raw.serialize,
    responseDeserialize: raw.deserialize,
  },
  unary: {
    path: "/bench.Echo/Unary",
    requestStream: false,
    responseStream: false,
    requestSerialize: raw.serialize,
    requestDeserialize: raw.deserialize,
    responseSerialize: raw.serialize,
    responseDeserialize: raw.deserialize,
  },
};
