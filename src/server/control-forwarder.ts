import { Control } from "../../gen/baton/v1/control_pb.js";
import type { CallBreaker } from "../breakers/index.js";
import { BatonError, Code, LEADER_TRAILER, toBatonError, unauthenticated, unavailable } from "../errors.js";
import type { Logger } from "../logging.js";
import { createClient, type CallOptions, type Channel, type HandlerContext, type ServiceClient, type ServiceImpl } from "../rpc/index.js";
import { CONTROL_READS, FORWARDED_IDENTITY_HEADER, FORWARDED_SERIAL_HEADER, normalizeSerial, type SpiffeIdentity } from "../security/index.js";

/** How a follower reaches the leader. */
export interface ControlForwarderOptions {
  /** Where Control is served: undefined when here (this server leads, or is no replica); else the leader's address as last read, "" when none is elected. */
  leader(): string | undefined;
  /** What a follower answers when it does not forward: UNAVAILABLE naming the leader (the baton-leader trailer), as for writes. */
  notLeader(): BatonError;
  /** A channel to `address` over mTLS as this server, with a breaker; asked once per address while it leads, closed here. */
  connect(address: string): { channel: Channel; breaker: CallBreaker };
  logger: Logger;
}

/** Control with its reads forwarded, and the channels to the leader it holds. */
export interface ControlForwarder {
  service: ServiceImpl<typeof Control>;
  /** Closes the channels to every address but the leader's now (all of them when this server leads); call it when this server is elected. */
  closeFormerLeaders(): void;
  /** Closes every channel (shutdown). */
  close(): void;
}

// How long a forwarded call waits for a connection to the leader before it fails
// UNAVAILABLE; under the breaker's own timeout (5 s), so this message is the one seen.
const CONNECT_MS = 4000;

interface Leader {
  address: string;
  control: ServiceClient<typeof Control>;
  channel: Channel;
  breaker: CallBreaker;
}

type Unary = (request: unknown, ctx: HandlerContext) => Promise<unknown>;
type Streaming = (request: unknown, ctx: HandlerContext) => AsyncIterable<unknown>;
type ForwardUnary = (request: unknown, options: CallOptions) => Promise<unknown>;
type ForwardStreaming = (request: unknown, options: CallOptions) => AsyncIterable<unknown>;

// The client's method of the same name (createClient builds one per method of Control).
function clientMethod<F>(leader: Leader, localName: string): F {
  return (leader.control as unknown as Record<string, F>)[localName]!;
}

/**
 * Control with its reads (CONTROL_READS) forwarded to the leader while this server follows,
 * so an operator pointed at any replica reads the same answers; writes are left to `local`,
 * which refuses them on a follower naming the leader. The request is already validated here
 * and the answer redacted again on its way out, by the adapter around this service.
 */
export function forwardControlReads(local: ServiceImpl<typeof Control>, options: ControlForwarderOptions): ControlForwarder {
  const leaders = new Map<string, Leader>();
  // The leader as the last call saw it: when it changes, the channels to former leaders go.
  let seen: string | undefined;
  const closeExcept = (keep: string | undefined, stopping = false): void => {
    seen = keep;
    for (const [address, leader] of leaders) {
      if (address === keep) continue;
      leaders.delete(address);
      // Calls still open on it finish (grpc-js lets them); new ones go to the new leader.
      leader.channel.close();
      leader.breaker.shutdown();
      if (!stopping) options.logger.info({ address, leader: keep || (keep === undefined ? "this coordinator" : "none elected") }, "closed the channel to a former leader");
    }
  };
  const leaderAt = (address: string): Leader => {
    let found = leaders.get(address);
    if (!found) {
      const { channel, breaker } = options.connect(address);
      leaders.set(address, (found = { address, control: createClient(Control, channel), channel, breaker }));
    }
    return found;
  };
  // The leader to forward this call to, or undefined to serve it here.
  const route = (ctx: HandlerContext): Leader | undefined => {
    const address = options.leader();
    if (address !== seen && leaders.size > 0) closeExcept(address);
    seen = address;
    if (address === undefined) return undefined;
    // Sent here by a coordinator that took this one for the leader: leadership moved since it
    // looked. One hop only, so followers can never pass a call around between them.
    if (!address || ctx.requestHeader.has(FORWARDED_IDENTITY_HEADER)) throw options.notLeader();
    return leaderAt(address);
  };
  const service: Record<string, unknown> = { ...local };
  for (const method of Control.methods) {
    const path = `/${Control.typeName}/${method.name}`;
    const own = (local as Record<string, unknown>)[method.localName];
    if (!CONTROL_READS.has(path) || typeof own !== "function") continue;
    if (method.methodKind === "unary") {
      service[method.localName] = async (request: unknown, ctx: HandlerContext) => {
        const leader = route(ctx);
        if (!leader) return (own as Unary).call(local, request, ctx);
        const callOptions = await forwarding(leader, ctx);
        return clientMethod<ForwardUnary>(leader, method.localName)(request, callOptions).catch((err: unknown) => {
          // The leader's error as it gave it: its code, message and baton-* trailers (a leader
          // that has become a follower names the new one; the caller goes there).
          throw toBatonError(err);
        });
      };
    } else if (method.methodKind === "server_streaming") {
      service[method.localName] = (request: unknown, ctx: HandlerContext) => {
        const leader = route(ctx);
        if (!leader) return (own as Streaming).call(local, request, ctx);
        return pipe(leader, ctx, (callOptions) => clientMethod<ForwardStreaming>(leader, method.localName)(request, callOptions));
      };
    } else {
      throw new Error(`${path} is listed as a Control read but is ${method.methodKind}: only unary and server-streaming reads can be forwarded`);
    }
  }
  return {
    service: service as ServiceImpl<typeof Control>,
    closeFormerLeaders: () => closeExcept(options.leader()),
    close: () => closeExcept(undefined, true),
  };
}

/**
 * The leader's answers as they come, until either end stops: the caller's cancellation or
 * deadline (ctx.signal) cancels the leader's call, and the leader's end or error ends this.
 */
async function* pipe(leader: Leader, ctx: HandlerContext, start: (options: CallOptions) => AsyncIterable<unknown>): AsyncGenerator<unknown> {
  const options = await forwarding(leader, ctx);
  try {
    // Leaving early (the caller gone) returns the client's iterator, which cancels the call.
    for await (const message of start(options)) yield message;
  } catch (err) {
    // As for unary calls: the leader's code, message and trailers.
    throw toBatonError(err);
  }
}

/**
 * The options of a forwarded call, once the leader can be reached (through its breaker, so a
 * leader that is down fails calls fast). The follower calls as itself (its coordinator
 * certificate) and names the caller; the leader believes that only from a coordinator, and
 * checks the caller's own capability. A revoked caller never gets here: this server's guard
 * refused it before the handler ran, and the serial goes along for the leader's deny list.
 * A stream whose certificate is revoked while it is open is ended here (AccessControl.onCall
 * aborts ctx.signal), which cancels the leader's call.
 */
async function forwarding(leader: Leader, ctx: HandlerContext): Promise<CallOptions> {
  const identity = ctx.identity as SpiffeIdentity | undefined;
  if (!identity?.uri) throw unauthenticated("a forwarded call needs the caller's identity, and this one has none");
  const headers: Record<string, string> = { [FORWARDED_IDENTITY_HEADER]: identity.uri };
  const serial = ctx.peer.certificate?.serialNumber;
  if (serial) headers[FORWARDED_SERIAL_HEADER] = normalizeSerial(serial);
  const connectBy = Math.min(Date.now() + CONNECT_MS, ctx.deadline?.getTime() ?? Infinity);
  await leader.breaker.call(() => ready(leader, connectBy)).catch((err: unknown) => {
    const e = toBatonError(err);
    if (e.code !== Code.UNAVAILABLE && e.code !== Code.DEADLINE_EXCEEDED) throw e;
    // Named in the trailer as for a write: a caller that can reach the leader goes there instead.
    throw new BatonError(Code.UNAVAILABLE, `this coordinator is a follower and cannot reach the leader at ${leader.address} to forward ${ctx.method}: ${e.message}`, { trailers: { [LEADER_TRAILER]: leader.address } });
  });
  ctx.logger.debug({ leader: leader.address }, "forwarding a Control read to the leader");
  return { signal: ctx.signal, headers, correlationId: ctx.correlationId, ...(ctx.deadline ? { deadline: ctx.deadline } : {}) };
}

// Connected to the leader (at once when the channel already is), or UNAVAILABLE by `by`.
function ready(leader: Leader, by: number): Promise<void> {
  return new Promise((resolve, reject) => {
    leader.channel.waitForReady(by, (err) => (err ? reject(unavailable(`no connection by the call's deadline or within ${CONNECT_MS} ms`)) : resolve()));
  });
}
