import type { Etcd3, Lease } from "etcd3";
import type { Logger } from "../logging.js";

/**
 * This process's etcd lease, kept alive (etcd3 sends the keep-alives) and replaced at once
 * when it is lost (expired while etcd was unreachable, or revoked): what lived on the old
 * one is gone, so onNewLease handlers put it back. Leader election and the registry
 * entries of every participant (coordinators, resource managers, performance monitors) live on it.
 */
export class LeaseKeeper {
  private lease: Lease | undefined;
  private closed = false;
  private leases = 0;
  private readonly lostHandlers: Array<(reason: Error) => void> = [];
  private readonly renewHandlers: Array<() => void> = [];

  constructor(private readonly options: { client: Etcd3; ttlSeconds: number; logger: Logger; retryMs?: number }) {}

  /** The lease's id (hex), granted on first use. */
  async leaseId(): Promise<string> {
    return (await this.ensure()).grant();
  }

  /** Runs `fn` when the lease is lost (before a new one is granted). */
  onLost(fn: (reason: Error) => void): void {
    this.lostHandlers.push(fn);
  }

  /** Runs `fn` when a lease replaces one that was lost (what lived on the old one must be put again). */
  onNewLease(fn: () => void): void {
    this.renewHandlers.push(fn);
  }

  private ensure(): Lease {
    if (this.lease && !this.lease.revoked()) return this.lease;
    const lease = this.options.client.lease(this.options.ttlSeconds);
    this.lease = lease;
    let granted = false;
    lease.grant().then(() => (granted = true), () => {});
    if (this.leases++ > 0) for (const fn of this.renewHandlers) fn();
    lease.on("lost", (err: Error) => {
      if (this.lease === lease) this.lease = undefined;
      if (this.closed) return;
      for (const fn of this.lostHandlers) fn(err);
      // A new lease at once; but a grant that failed (etcd unreachable) is not retried in a tight loop.
      const again = () => !this.closed && !this.lease && this.ensure();
      if (granted) queueMicrotask(again);
      else setTimeout(again, this.options.retryMs ?? 1000).unref();
    });
    return lease;
  }

  /** Revokes the lease: whatever lives on it goes at once. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.lease?.revoke();
    } catch (err) {
      this.options.logger.warn({ err: (err as Error).message }, "revoking the etcd lease failed: its keys go when it expires");
    }
  }
}
