import type { Etcd3 } from "etcd3";
import type { Logger } from "../logging.js";
import { waitForChange, type KeyState } from "./key-watch.js";
import { LeaseKeeper } from "./lease-keeper.js";

/** A term of leadership: the election key's incarnation, which fences every write of the term. */
export interface Term {
  /** The election key (full, with the prefix). */
  key: string;
  /** Its create revision: writes compare it, so none lands once another term has begun. */
  createRevision: string;
  /** The lease the key lives on, hex. */
  leaseId: string;
  /** When it was won (Date.now()). */
  wonAt: number;
}

/** What an election is run with. */
export interface ElectionOptions {
  client: Etcd3;
  /** The election key, "baton/leader". */
  key: string;
  /** What followers are told: the address agents and clients reach this process at. */
  address: string;
  ttlSeconds: number;
  recheckMs: number;
  logger: Logger;
}

/**
 * Leader election on one key with a lease (etcd's own recipe, without its queue): a
 * candidate creates the key only if it is absent (create_revision == 0), on its lease;
 * the others wait for it to go (the lease expires when its holder dies or stalls past the
 * TTL, or the holder resigns) and try again. The winner's create revision names its term.
 */
export class LeaderElection {
  private readonly stop = new AbortController();
  private known: KeyState | undefined;
  private term: Term | undefined;
  private readonly keyBytes: Buffer;
  private lostHandlers: Array<(reason: Error) => void> = [];
  private readonly lease: LeaseKeeper;

  constructor(private readonly options: ElectionOptions) {
    this.keyBytes = Buffer.from(options.key);
    this.lease = new LeaseKeeper({ client: options.client, ttlSeconds: options.ttlSeconds, logger: options.logger, retryMs: options.recheckMs });
    this.lease.onLost((err) => {
      const term = this.term;
      this.term = undefined;
      if (!term || this.stop.signal.aborted) return;
      this.options.logger.error({ err: err.message, term: term.createRevision }, "leadership lost: the lease is gone; this term's writes are refused");
      for (const fn of this.lostHandlers) fn(err);
    });
  }

  /** The leader's address as last read ("" when none is known); this process's own when it leads. */
  get leaderAddress(): string {
    if (this.term) return this.options.address;
    return this.known?.kv ? this.known.kv.value.toString("utf8") : "";
  }

  /** The term held now, if this process leads. */
  get current(): Term | undefined {
    return this.term;
  }

  /** The lease this process is on (for the service registry), granted on first use. */
  async leaseId(): Promise<string> {
    return this.lease.leaseId();
  }

  /** Runs `fn` when leadership is lost (the lease expired or was revoked, or etcd said so). */
  onLost(fn: (reason: Error) => void): void {
    this.lostHandlers.push(fn);
  }

  /** Runs `fn` when a lease replaces one that was lost (what lived on the old one must be put again). */
  onNewLease(fn: () => void): void {
    this.lease.onNewLease(fn);
  }

  /** Campaigns until this process leads; resolves with the term. Rejects once closed. */
  async campaign(): Promise<Term> {
    const { client, logger, address, recheckMs } = this.options;
    for (;;) {
      if (this.stop.signal.aborted) throw new Error("the election was closed");
      let leaseId: string;
      try {
        leaseId = await this.leaseId();
        const answer = await client.kv.txn({
          compare: [{ key: this.keyBytes, target: "Create", result: "Equal", create_revision: 0 }],
          success: [{ request_put: { key: this.keyBytes, value: Buffer.from(address), lease: leaseId } }],
          failure: [{ request_range: { key: this.keyBytes } }],
        });
        if (answer.succeeded) {
          // The put happened at the Txn's revision: that is the key's create revision.
          this.term = { key: this.options.key, createRevision: String(answer.header.revision), leaseId, wonAt: Date.now() };
          logger.info({ term: this.term.createRevision, lease: leaseId, address }, "elected leader");
          return this.term;
        }
        this.known = { revision: String(answer.header.revision), kv: answer.responses[0]?.response_range.kvs[0] };
      } catch (err) {
        if (this.stop.signal.aborted) throw new Error("the election was closed");
        logger.warn({ err: (err as Error).message, retry_ms: recheckMs }, "etcd unreachable while campaigning; retrying");
        await new Promise((resolve) => setTimeout(resolve, recheckMs));
        continue;
      }
      logger.info({ leader: this.leaderAddress }, "following: another coordinator leads");
      this.known = await waitForChange(client, this.keyBytes, this.known, { recheckMs, signal: this.stop.signal });
    }
  }

  /** Stops campaigning; a leader resigns (its key deleted if still its own, its lease revoked) so a follower takes over at once. */
  async close(): Promise<void> {
    if (this.stop.signal.aborted) return;
    this.stop.abort(new Error("the election was closed"));
    const term = this.term;
    this.term = undefined;
    try {
      if (term) {
        await this.options.client.kv.txn({
          compare: [{ key: this.keyBytes, target: "Create", result: "Equal", create_revision: term.createRevision }],
          success: [{ request_delete_range: { key: this.keyBytes } }],
          failure: [],
        });
      }
    } catch (err) {
      this.options.logger.warn({ err: (err as Error).message }, "resigning failed: followers take over when the lease expires");
    }
    await this.lease.close();
  }
}
