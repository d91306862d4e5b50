import { unwatchFile, watchFile } from "node:fs";
import { Counter, type Registry } from "prom-client";
import type { BatonConfig } from "../config.js";
import { BatonError, Code, permissionDenied, unauthenticated } from "../errors.js";
import type { Logger } from "../logging.js";
import type { CallGuard, HandlerContext, PeerInfo } from "../rpc/index.js";
import { CONTROL_READS, createAuthenticator, FORWARD_CAPABILITY, FORWARDED_IDENTITY_HEADER, FORWARDED_SERIAL_HEADER, loadPolicy, normalizeSerial, readDenyList, type Authentication, type Authenticator, type Policy, type SpiffeIdentity } from "../security/index.js";

interface LiveCall {
  /** The peer certificate's serial, and on a forwarded call the forwarded caller's too. */
  serials: string[];
  uri: string;
  method: string;
  abort: (reason: BatonError) => void;
}

/**
 * Who may call what: authenticates every call (certificate or trusted sidecar header),
 * checks the capability the method needs against the policy, refuses revoked certificates,
 * and ends the live calls of a certificate once it is revoked. Refusals are logged and counted.
 */
export class AccessControl {
  readonly policy: Policy;
  private readonly authenticator: Authenticator;
  private denied = new Set<string>();
  private readonly live = new Map<HandlerContext, LiveCall>();
  private readonly refusals: Counter<"code" | "role" | "capability">;
  private readonly revokedClosed: Counter;
  private readonly logger: Logger;
  private readonly revokedFile: string;
  private readonly watching: boolean;

  constructor(config: BatonConfig, logger: Logger, registry: Registry) {
    this.logger = logger.child({ component: "access" });
    this.policy = loadPolicy(config.security.policyFile || undefined);
    this.revokedFile = config.tls.revokedFile;
    this.denied = readDenyList(this.revokedFile);
    this.authenticator = createAuthenticator({
      trustDomain: config.tls.trustDomain,
      mesh: config.mesh.enabled ? { trustedPeers: config.mesh.trustedPeers } : undefined,
      isRevoked: (serial) => this.denied.has(serial),
      mayForward: (by) => this.policy.allows(by.role, FORWARD_CAPABILITY),
    });
    this.refusals = new Counter({ name: "baton_auth_refusals_total", help: "Calls refused before their handler ran, by status code, caller role and capability", labelNames: ["code", "role", "capability"], registers: [registry] });
    this.revokedClosed = new Counter({ name: "baton_revoked_calls_closed_total", help: "Live calls ended because their certificate was revoked", registers: [registry] });
    this.watching = !config.mesh.enabled;
    if (this.watching) watchFile(this.revokedFile, { interval: config.tls.reloadIntervalMs, persistent: false }, this.onDenyListChange);
  }

  /** The caller's identity, or UNAUTHENTICATED with the reason. */
  authenticate(peer: PeerInfo, headers: ReadonlyMap<string, string>): SpiffeIdentity {
    const result = this.authenticator({ address: peer.address, certificate: peer.certificate, headers });
    if (!result.ok) throw refusal(result);
    return result.identity;
  }

  /** The interceptor's check, run for every call of every service before its handler. */
  readonly guard: CallGuard = ({ method, peer, headers }) => {
    const capability = this.policy.capabilityOf(method) ?? "none";
    const result = this.authenticator({ address: peer.address, certificate: peer.certificate, headers });
    if (!result.ok) return this.refuse(refusal(result), method, result.denied?.identity.role ?? "none", result.denied?.capability ?? capability, result.denied?.identity.uri);
    const { identity, forwardedBy } = result;
    const by = forwardedBy?.uri;
    if (by && !CONTROL_READS.has(method)) return this.refuse(permissionDenied(`${by} forwarded ${method} for ${identity.uri}, but only Control reads are forwarded; a write goes to the leader itself`), method, identity.role, capability, identity.uri, by);
    if (capability === "none") return this.refuse(permissionDenied(`${method} has no capability in the policy, so no one may call it`), method, identity.role, capability, identity.uri, by);
    if (!this.policy.allows(identity.role, capability)) {
      return this.refuse(permissionDenied(`${identity.uri} (role ${identity.role}) lacks the capability ${capability} that ${method} needs`), method, identity.role, capability, identity.uri, by);
    }
    return undefined;
  };

  /**
   * Tracks a call by its certificate serial, so revoking the certificate ends it; a forwarded
   * call by the forwarded caller's serial as well (the guard has checked the forwarder and
   * the header), so revoking that caller here ends the stream a follower forwards for it.
   */
  readonly onCall = (ctx: HandlerContext, abort: (reason: BatonError) => void): (() => void) => {
    const serials: string[] = [];
    const raw = ctx.peer.certificate?.serialNumber;
    if (raw) serials.push(normalizeSerial(raw));
    const forwarded = ctx.requestHeader.has(FORWARDED_IDENTITY_HEADER) ? ctx.requestHeader.get(FORWARDED_SERIAL_HEADER) : undefined;
    // Checked by the guard already; a serial that does not parse names no certificate to revoke.
    if (forwarded !== undefined) serials.push(...serialOrNone(forwarded));
    if (serials.length === 0) return () => {};
    const identity = ctx.identity as SpiffeIdentity | undefined;
    this.live.set(ctx, { serials, uri: identity?.uri ?? "", method: ctx.method, abort });
    return () => void this.live.delete(ctx);
  };

  /** How many calls are tracked (for tests and metrics). */
  get liveCalls(): number {
    return this.live.size;
  }

  /** Rereads the deny list now (it is also polled) and ends the calls of newly revoked certificates. */
  reloadDenyList(): void {
    let next: Set<string>;
    try {
      next = readDenyList(this.revokedFile);
    } catch (err) {
      this.logger.error({ err: (err as Error).message, file: this.revokedFile }, "the deny list cannot be read; the previous one stays in force");
      return;
    }
    const added = [...next].filter((s) => !this.denied.has(s));
    this.denied = next;
    if (added.length > 0) this.logger.warn({ serials: added, file: this.revokedFile }, "certificates revoked");
    for (const call of [...this.live.values()]) {
      const serial = call.serials.find((s) => next.has(s));
      if (serial === undefined) continue;
      this.logger.warn({ serial, identity: call.uri, method: call.method }, "closing a call whose certificate was revoked");
      this.revokedClosed.inc();
      call.abort(unauthenticated(`certificate serial ${serial} (${call.uri}) was revoked`));
    }
  }

  /** Stops watching the deny list. */
  close(): void {
    if (this.watching) unwatchFile(this.revokedFile, this.onDenyListChange);
  }

  private readonly onDenyListChange = (): void => this.reloadDenyList();

  private refuse(error: BatonError, method: string, role: string, capability: string, uri: string | undefined, forwardedBy?: string): BatonError {
    this.refusals.inc({ code: Code[error.code], role, capability });
    this.logger.warn({ method, code: Code[error.code], role, capability, ...(uri ? { identity: uri } : {}), ...(forwardedBy ? { forwarded_by: forwardedBy } : {}), reason: error.message }, "call refused");
    return error;
  }
}

// A caller with no identity is UNAUTHENTICATED; one proven but refused what it asked (naming another caller without control.forward) PERMISSION_DENIED.
function refusal(result: Authentication & { ok: false }): BatonError {
  return result.denied ? permissionDenied(result.reason) : unauthenticated(result.reason);
}

function serialOrNone(raw: string): string[] {
  try {
    return [normalizeSerial(raw)];
  } catch {
    return [];
  }
}
