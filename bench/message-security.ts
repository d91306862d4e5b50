// What message security costs per batch on the Connect stream: signing a serialized
// batch, opening (verify + decode + replay check) a signed AgentReports,
// and sealing/opening a directive's sensitive input, each at a few payload sizes.
//   node --import tsx bench/message-security.ts
import { randomUUID } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { AgentReportsSchema } from "../gen/baton/v1/session_pb.js";
import { SEALED_DIRECTIVE_TYPE, createKeyring, createReplayGuard, keyringFromRotation, open, openSignedBatch, seal, signEnvelope } from "../src/security/index.js";

const leader = createKeyring();
const follower = keyringFromRotation(leader.toRotation());
const ITER = 20_000;

function time(name: string, bytes: number, fn: (i: number) => void): void {
  for (let i = 0; i < 1000; i++) fn(i);
  const start = performance.now();
  for (let i = 0; i < ITER; i++) fn(i + 1000);
  const ms = performance.now() - start;
  process.stdout.write(`message-security: op=${name} payload_bytes=${bytes} ops_per_s=${Math.round((ITER / ms) * 1000)} us_per_op=${((ms * 1000) / ITER).toFixed(1)}\n`);
}

for (const size of [256, 4096, 65_536]) {
  const payload = new Uint8Array(size).fill(7);
  time("sign", size, () => signEnvelope(leader, payload));
  // Each report batch is new (the replay guard refuses repeats), as on a live stream.
  const guard = createReplayGuard({ maxEntries: 10_000_000 });
  const reports = Array.from({ length: ITER + 1000 }, () => signEnvelope(follower, toBinary(AgentReportsSchema, create(AgentReportsSchema, { messageId: randomUUID(), sentAt: timestampNow(), sender: "a1", reports: [] }))));
  if (size === 256) time("open_signed_batch", reports[0]!.payload.length, (i) => openSignedBatch(leader, guard, reports[i]!, (b) => fromBinary(AgentReportsSchema, b), "a1"));
  const context = { messageId: randomUUID(), sender: "c", messageType: SEALED_DIRECTIVE_TYPE };
  const sealed = seal(leader, payload, context);
  time("seal", size, () => seal(leader, payload, context));
  time("open_sealed", size, () => open(follower, sealed, context));
}
