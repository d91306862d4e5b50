import type { DescFile, DescMessage } from "@bufbuild/protobuf";
import { file_baton_v1_common } from "../../gen/baton/v1/common_pb.js";
import { file_baton_v1_control } from "../../gen/baton/v1/control_pb.js";
import { file_baton_v1_coordination } from "../../gen/baton/v1/coordination_pb.js";
import { file_baton_v1_journal } from "../../gen/baton/v1/journal_pb.js";
import { file_baton_v1_performance_monitor } from "../../gen/baton/v1/performance_monitor_pb.js";
import { file_baton_v1_resource_manager } from "../../gen/baton/v1/resource_manager_pb.js";
import { file_baton_v1_security } from "../../gen/baton/v1/security_pb.js";
import { file_baton_v1_session } from "../../gen/baton/v1/session_pb.js";

// What the codec tests (test/rpc/fast-binary, fast-decode) walk: every baton.v1 message type, and a seeded PRNG for random messages.

/** Every file of baton.v1. */
export const BATON_FILES: DescFile[] = [
  file_baton_v1_common,
  file_baton_v1_control,
  file_baton_v1_coordination,
  file_baton_v1_journal,
  file_baton_v1_performance_monitor,
  file_baton_v1_resource_manager,
  file_baton_v1_security,
  file_baton_v1_session,
];

/** Every message type of the files, nested ones included. */
export function messagesOf(files: DescFile[]): DescMessage[] {
  const out: DescMessage[] = [];
  const add = (m: DescMessage) => {
    out.push(m);
    m.nestedMessages.forEach(add);
  };
  for (const file of files) file.messages.forEach(add);
  return out;
}

/** A seeded PRNG (mulberry32): the same messages every run. */
export function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
