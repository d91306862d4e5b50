/** One change in an atomic batch. */
export type WriteOp = { type: "put"; key: string; value: Uint8Array } | { type: "delete"; key: string };

/** A precondition of a batch: the key must be absent. */
export type Condition = { key: string; absent: true };

/** Paging of a scan. */
export interface ScanOptions {
  startAfter?: string;
  limit?: number;
}

/** The coordinator's durable journal: keys are strings ("task/<id>"), values opaque bytes. */
export interface Store {
  /** Applies every op atomically and durably if every condition holds; false (nothing written) when one does not. */
  write(ops: WriteOp[], conditions?: Condition[]): Promise<boolean>;
  /** One value. */
  get(key: string): Promise<Uint8Array | undefined>;
  /** Entries whose key starts with prefix, in key order, after startAfter, at most limit. */
  scan(prefix: string, options?: ScanOptions): Promise<Array<[string, Uint8Array]>>;
  /** Flushes and closes; later calls reject. */
  close(): Promise<void>;
}
