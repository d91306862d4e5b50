// The transport ceiling's server: a raw @grpc/grpc-js bidi and unary echo over mTLS with the
// coordinator's certificate, no protobuf, no handler logic. Reports its port over IPC.
//   (started by bench/scenarios/echo.ts: node --import tsx bench/peers/echo-server.ts <ca> <cert> <key>)
import { readFileSync } from "node:fs";
import { Server, ServerCredentials, type sendUnaryData, type ServerDuplexStream, type ServerUnaryCall } from "@grpc/grpc-js";
import { ECHO_SERVICE } from "./echo-service.js";

const [ca, cert, key] = process.argv.slice(2).map((p) => readFileSync(p));
const server = new Server();
server.addService(ECHO_SERVICE, {
  echo(call: ServerDuplexStream<Buffer, Buffer>) {
    call.on("data", (msg: Buffer) => call.write(msg));
    call.on("end", () => call.end());
    call.on("error", () => {});
  },
  unary(call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) {
    callback(null, call.request);
  },
});
server.bindAsync("127.0.0.1:0", ServerCredentials.createSsl(ca!, [{ cert_chain: cert!, private_key: key! }], true), (err, port) => {
  if (err) throw err;
  process.send?.({ port });
});
process.on("message", (m: string) => {
  // "gc" before a memory reading (started with --expose-gc), so garbage is not counted as cost.
  if (m === "gc") {
    (globalThis as { gc?: () => void }).gc?.();
    process.send?.({ rss: process.memoryUsage().rss });
    return;
  }
  // The bench ends its calls by closing its channels; nothing here is worth waiting for.
  server.forceShutdown();
  process.exit(0);
});
