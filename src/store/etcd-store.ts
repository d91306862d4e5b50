import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { Etcd3, type ICompare, type IKeyValue, type IRequestOp } from "etcd3";
import type { SecretBox } from "./secret-box.js";
import { assertBatch, assertKey, assertScan, closedError, type Condition, type ScanOptions, type Store, type WriteOp } from "./store.js";

// The journal in etcd: one batch is one Txn (compares, then puts and deletes), which is
// what the Store contract was kept to. etcd fsyncs its WAL before it answers, so a
// batch acknowledged is durable on a quorum of members.

/** etcd's own default for --max-txn-ops (3.4); a server started with more allows more. */
export const ETCD_DEFAULT_MAX_TXN_OPS = 128;

/** How to reach etcd. */
export interface EtcdConnection {
  /** "127.0.0.1:2379" or "https://etcd-1:2379"; several for a cluster. */
  endpoints: string[];
  /** PEM files for TLS to etcd; all "" for plaintext. */
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  /** How long to wait for a connection, ms. */
  dialTimeoutMs?: number;
}

/** A write is fenced by a key's create revision: it applies only while that key is the same incarnation. */
export interface Fence {
  key: string;
  createRevision: string;
}

/** What an etcd store is made from. */
export interface EtcdStoreOptions extends EtcdConnection {
  /** Every key of the journal is under it ("baton/journal/"). */
  prefix: string;
  /** The most ops (and compares) one batch may carry: etcd's --max-txn-ops. */
  maxTxnOps?: number;
  /** When set, every write also compares this key's create revision, in the same Txn (leadership). */
  fence?: Fence;
  secrets?: SecretBox;
  /** An open client to use (not closed by close()); by default one is made from the endpoints. */
  client?: Etcd3;
}

/** Thrown by a fenced write after the fence key changed: this process no longer holds what the fence names. */
export class FencedWriteError extends Error {
  override readonly name = "FencedWriteError";
}

/** An etcd3 client for the endpoints, with TLS when files are given. */
export function connectEtcd(options: EtcdConnection): Etcd3 {
  const { caFile, certFile, keyFile } = options;
  const hosts = options.endpoints.map((e) => (/^[a-z]+:\/\//.test(e) ? e : `${caFile ? "https" : "http"}://${e}`));
  return new Etcd3({
    hosts,
    dialTimeout: options.dialTimeoutMs ?? 5000,
    // A journal page or a large batch is bigger than grpc-js's 4 MiB default answer.
    grpcOptions: { "grpc.max_receive_message_length": 64 * 1024 * 1024, "grpc.max_send_message_length": 64 * 1024 * 1024 },
    ...(caFile
      ? {
          credentials: {
            rootCertificate: readFileSync(caFile),
            ...(certFile ? { certChain: readFileSync(certFile) } : {}),
            ...(keyFile ? { privateKey: readFileSync(keyFile) } : {}),
          },
        }
      : {}),
  });
}

/** The first key after every key that starts with prefix (etcd's range_end for a prefix). */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  // Every byte 0xff, or no prefix: "\0" as range_end means every key from the start on.
  return Buffer.from([0]);
}

const SCAN_PAGE = 500;

/** Opens the journal on etcd: the Store contract, each batch one Txn. */
export function openEtcdStore(options: EtcdStoreOptions): Store {
  const client = options.client ?? connectEtcd(options);
  const ownsClient = options.client === undefined;
  const prefix = Buffer.from(options.prefix);
  const maxOps = options.maxTxnOps ?? ETCD_DEFAULT_MAX_TXN_OPS;
  const name = `etcd ${options.endpoints.join(",")} under ${JSON.stringify(options.prefix)}`;
  const full = (key: string) => Buffer.concat([prefix, Buffer.from(key)]);
  let closed = false;
  let wroteNonce = false;
  const open = () => {
    if (closed) throw closedError(name);
  };
  const fence = options.fence ? { key: Buffer.from(options.fence.key), createRevision: options.fence.createRevision } : undefined;
  // Beside the journal's keys, not under them, so scans never see it (unless the prefix is ""); one per open store.
  const nonceKey = Buffer.from(`${options.prefix.replace(/\/$/, "")}.nonce/${randomUUID()}`);

  async function write(ops: WriteOp[], conditions: Condition[] = []): Promise<boolean> {
    open();
    assertBatch(ops, conditions);
    // etcd refuses two ops on one key in a Txn; whole-value ops leave what the last one says.
    const last = new Map<string, WriteOp>();
    for (const op of ops) {
      last.delete(op.key);
      last.set(op.key, op);
    }
    const compare: ICompare[] = conditions.map((c) => ({ key: full(c.key), target: "Create", result: "Equal", create_revision: 0 }));
    if (fence) compare.push({ key: fence.key, target: "Create", result: "Equal", create_revision: fence.createRevision });
    const success: IRequestOp[] = [...last.values()].map((op) =>
      op.type === "put" ? { request_put: { key: full(op.key), value: Buffer.from(op.value) } } : { request_delete_range: { key: full(op.key) } },
    );
    // etcd3 resends a call whose answer was lost (its default retry policy). Unconditional
    // puts and deletes are safe to apply twice: the journal has one batch in flight, so
    // nothing newer can come between. A conditional batch is not: its resend would find its
    // own keys and report the condition failed. So it also writes a nonce of its own, and
    // a failure that finds that nonce in place is this batch, applied by the attempt whose
    // answer was lost.
    const nonce = conditions.length > 0 ? randomUUID() : undefined;
    if (nonce) {
      success.push({ request_put: { key: nonceKey, value: Buffer.from(nonce) } });
      wroteNonce = true;
    }
    if (success.length > maxOps || compare.length > maxOps) {
      const ops = nonce ? `${success.length - 1} ops (and 1 more for its resend check)` : `${success.length} ops`;
      throw new Error(
        `a journal batch of ${ops} and ${compare.length} compares is more than store.etcd.maxTxnOps (${maxOps}) allows in one etcd transaction; start etcd with a larger --max-txn-ops and raise store.etcd.maxTxnOps to match`,
      );
    }
    if (success.length === 0 && compare.length === 0) return true;
    // On failure the fence key (and the nonce) are read back in the same Txn: a condition
    // failing, the fence gone and a resend are told apart without a second, racing read.
    const failure: IRequestOp[] = [...(fence ? [{ request_range: { key: fence.key } }] : []), ...(nonce ? [{ request_range: { key: nonceKey } }] : [])];
    const answer = await client.kv.txn({ compare, success, failure });
    if (answer.succeeded) return true;
    if (nonce && answer.responses.at(-1)?.response_range.kvs[0]?.value.toString("utf8") === nonce) return true;
    if (fence) {
      const kv = answer.responses[0]?.response_range.kvs[0];
      if (!kv || String(kv.create_revision) !== String(fence.createRevision)) {
        throw new FencedWriteError(`write refused: ${options.fence!.key} is no longer at create revision ${fence.createRevision} (this process lost what fences its writes)`);
      }
    }
    return false;
  }

  async function get(key: string): Promise<Uint8Array | undefined> {
    open();
    assertKey(key);
    const answer = await client.kv.range({ key: full(key) });
    const kv = answer.kvs[0];
    return kv ? new Uint8Array(kv.value) : undefined;
  }

  async function scan(scanPrefix: string, scanOptions: ScanOptions = {}): Promise<Array<[string, Uint8Array]>> {
    open();
    assertScan(scanPrefix, scanOptions);
    const limit = scanOptions.limit;
    if (limit === 0) return [];
    const from = full(scanPrefix);
    const end = prefixEnd(from);
    let start = from;
    if (scanOptions.startAfter !== undefined) {
      const after = Buffer.concat([full(scanOptions.startAfter), Buffer.from([0])]);
      if (Buffer.compare(after, start) > 0) start = after;
    }
    const out: Array<[string, Uint8Array]> = [];
    // Every page read at the first page's revision: one consistent view, however many pages.
    let revision: string | undefined;
    while (limit === undefined || out.length < limit) {
      if (Buffer.compare(start, end) >= 0 && !(end.length === 1 && end[0] === 0)) break;
      const want = Math.min(SCAN_PAGE, limit === undefined ? SCAN_PAGE : limit - out.length);
      const answer = await client.kv.range({ key: start, range_end: end, limit: want, ...(revision ? { revision } : {}) });
      revision ??= String(answer.header.revision);
      for (const kv of answer.kvs as IKeyValue[]) out.push([kv.key.subarray(prefix.length).toString("utf8"), new Uint8Array(kv.value)]);
      if (!answer.more || answer.kvs.length === 0) break;
      start = Buffer.concat([answer.kvs.at(-1)!.key, Buffer.from([0])]);
    }
    return out;
  }

  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    // Only a store that wrote conditions made its nonce key; a process that dies leaves one small key.
    if (wroteNonce) await client.kv.deleteRange({ key: nonceKey }).catch(() => undefined);
    if (ownsClient) client.close();
  }

  return { write, get, scan, close, name, durable: true, ...(options.secrets ? { secrets: options.secrets } : {}) };
}
