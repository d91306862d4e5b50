import { lookup } from "node:dns/promises";
import { isIP, Server as NetServer, type Socket } from "node:net";
import { createServer as createTlsServer, type SecureContextOptions, type Server as TlsServer, type TLSSocket } from "node:tls";
import { experimental, ServerCredentials, type Server } from "@grpc/grpc-js";
import type { Logger } from "../logging.js";
import { addressList } from "../security/index.js";

/** Limits on connections before grpc-js sees them: how long a peer may take to speak, and how many may be open. */
export interface ConnectionLimits {
  /** How long a new connection has to complete the TLS handshake before it is destroyed, ms. */
  tlsHandshakeTimeoutMs: number;
  /** How long a connection has, once TLS is done (or from accept in plaintext), to send the HTTP/2 preface and its first SETTINGS, ms. */
  prefaceTimeoutMs: number;
  /** Connections open at once, every peer together; past it new ones are closed at once. */
  maxConnections: number;
  /** Connections open at once from one IP address; past it new ones from that address are closed at once. */
  maxConnectionsPerAddress: number;
  /** Addresses or CIDR ranges the per-address cap does not apply to (the total cap still does). */
  maxConnectionsPerAddressExempt: string[];
}

/** Defaults: a few seconds to speak, and caps that still let 10,000 agents of a benchmark connect from one host. */
export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  tlsHandshakeTimeoutMs: 5000,
  prefaceTimeoutMs: 5000,
  maxConnections: 20_000,
  maxConnectionsPerAddress: 1000,
  // Same-host peers (benchmarks, a mesh sidecar) open many connections from one address.
  maxConnectionsPerAddressExempt: ["127.0.0.0/8", "::1"],
};

/** Why the guard closed a connection (the `reason` of its log lines and metric). */
export type ConnectionRefusal =
  | "max_connections"
  | "max_connections_per_address"
  | "tls_handshake_timeout"
  | "tls_handshake_failed"
  | "preface_timeout"
  | "bad_preface"
  | "no_credentials"
  | "accept_error";

/** What a ConnectionGuard is made from. */
export interface ConnectionGuardOptions {
  /** The grpc-js server that serves the connections once they speak HTTP/2. */
  server: Server;
  /** TLS (done here, so its time can be limited) or insecure (mesh mode). */
  credentials: ServerCredentials;
  limits: ConnectionLimits;
  logger: Logger;
  /** Called for every connection the guard closes. */
  onRefused?: (reason: ConnectionRefusal) => void;
  /** At most one warning per reason in this window; the rest are summed into one line at its end, ms. Default 10000. */
  logIntervalMs?: number;
}

// RFC 9113 3.4: the client preface is this magic followed by a SETTINGS frame.
const MAGIC = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const FRAME_HEADER = 9;
const SETTINGS = 0x4;
// SETTINGS_MAX_FRAME_SIZE's initial value (RFC 9113 6.5.2): a first SETTINGS cannot be larger.
const MAX_FIRST_FRAME = 16_384;

/** The bytes a preface needs before its first frame's payload. */
const PREFACE_HEAD = MAGIC.length + FRAME_HEADER;

/** How long the magic plus the first SETTINGS frame are, read from their first PREFACE_HEAD bytes; undefined if they cannot be a preface. */
function prefaceLength(buf: Buffer): number | undefined {
  if (!buf.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const length = buf.readUIntBE(MAGIC.length, 3);
  const type = buf[MAGIC.length + 3];
  const flags = buf[MAGIC.length + 4];
  const stream = buf.readUInt32BE(MAGIC.length + 5) & 0x7fffffff;
  if (type !== SETTINGS || flags !== 0 || stream !== 0 || length % 6 !== 0 || length > MAX_FIRST_FRAME) return undefined;
  return PREFACE_HEAD + length;
}

/** The peer's address as one key, whatever family the listener accepted it on. */
function peerKey(address: string | undefined): string {
  if (!address) return "";
  return address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/**
 * Warnings that an attack cannot turn into a flood: the first of each reason in a window
 * is logged at once, the others are counted and summed up in one line when the window ends.
 */
function rateLimitedWarn(logger: Logger, intervalMs: number) {
  const windows = new Map<string, { suppressed: number; message: string; timer: NodeJS.Timeout }>();
  const flush = (reason: string) => {
    const w = windows.get(reason);
    windows.delete(reason);
    if (w?.suppressed) logger.warn({ reason, suppressed: w.suppressed, interval_ms: intervalMs }, `${w.message}: ${w.suppressed} more (${reason}) in ${intervalMs / 1000} s`);
  };
  return {
    warn(reason: string, fields: Record<string, unknown>, message: string): void {
      const w = windows.get(reason);
      if (w) {
        w.suppressed++;
        return;
      }
      logger.warn({ ...fields, reason }, message);
      const timer = setTimeout(() => flush(reason), intervalMs);
      timer.unref();
      windows.set(reason, { suppressed: 0, message, timer });
    },
    close(): void {
      for (const [reason, w] of windows) {
        clearTimeout(w.timer);
        flush(reason);
      }
    },
  };
}

/** One accepted connection, from accept to close. */
interface Tracked {
  /** The accepted TCP socket (under the TLS socket, if any). */
  raw: Socket;
  /** Handed to grpc-js, which closes it on shutdown. */
  injected: boolean;
  /** Ends a TLS handshake that takes too long, however it trickles in. */
  handshakeTimer?: NodeJS.Timeout;
  /** Forgets the connection; once, whichever of its sockets closes first. */
  release(): void;
}

/** A live TCP connection's 4-tuple: the same for the accepted socket and the TLS socket over it. */
const tuple = (s: Socket) => `${s.remoteAddress}|${s.remotePort}|${s.localAddress}|${s.localPort}`;

/**
 * The listening socket in front of grpc-js. It accepts TCP itself so it can refuse
 * connections past the caps at once, limit how long TLS may take, and hold each
 * connection until it has sent the HTTP/2 preface; only then is it injected into grpc-js
 * (server.createConnectionInjector), which serves it as if it had accepted it.
 */
export class ConnectionGuard {
  private readonly listeners: NetServer[] = [];
  /** Every connection accepted and not yet closed, by 4-tuple. */
  private readonly tracked = new Map<string, Tracked>();
  private readonly perAddress = new Map<string, number>();
  private readonly exempt;
  private readonly injector;
  private readonly tls: TlsServer | undefined;
  private credentialsReady: boolean;
  private readonly unwatch: () => void;
  private readonly log;
  private readonly logger: Logger;
  private closed = false;

  constructor(private readonly options: ConnectionGuardOptions) {
    const { server, credentials, limits } = options;
    this.logger = options.logger.child({ component: "listener" });
    this.log = rateLimitedWarn(this.logger, options.logIntervalMs ?? 10_000);
    this.exempt = addressList(limits.maxConnectionsPerAddressExempt);
    // grpc-js gets connections whose TLS is done here, so it serves them as plaintext HTTP/2;
    // the TLSSocket is still the session's socket, so getAuthContext() sees the peer certificate.
    const interceptors = credentials._getInterceptors();
    const plain = ServerCredentials.createInsecure();
    this.injector = server.createConnectionInjector(interceptors.length > 0 ? experimental.createServerCredentialsWithInterceptors(plain, interceptors) : plain);
    if (!credentials._isSecure()) {
      this.credentialsReady = true;
      this.unwatch = () => {};
      return;
    }
    // What grpc-js's own secure server would use: its constructor options, then the context.
    const context = credentials._getSecureContextOptions();
    this.credentialsReady = context !== null;
    const tls = createTlsServer({ ...credentials._getConstructorOptions(), ...context, ALPNProtocols: ["h2"], handshakeTimeout: limits.tlsHandshakeTimeoutMs });
    tls.on("secureConnection", (socket: TLSSocket) => {
      const conn = this.tracked.get(tuple(socket));
      if (!conn) return void socket.destroy();
      clearTimeout(conn.handshakeTimer);
      socket.once("close", conn.release);
      pinPeerCertificate(socket);
      this.awaitPreface(socket, conn);
    });
    tls.on("tlsClientError", (err: NodeJS.ErrnoException, socket: TLSSocket) => {
      const conn = this.tracked.get(tuple(socket));
      // A peer that hangs up mid-handshake left on its own, and one we closed is counted already.
      if (err.code === "ECONNRESET" || !conn || conn.raw.destroyed) socket.destroy();
      else this.refuse(socket, err.code === "ERR_TLS_HANDSHAKE_TIMEOUT" ? "tls_handshake_timeout" : "tls_handshake_failed", { err: err.message });
      conn?.raw.destroy();
    });
    // Renewed certificates (reloading credentials) reach new handshakes, as in grpc-js.
    const watcher = (next: SecureContextOptions | null) => {
      if (next) {
        try {
          tls.setSecureContext(next);
        } catch (err) {
          this.logger.error({ err: (err as Error).message }, "the new TLS context is not usable");
          next = null;
        }
      }
      this.credentialsReady = next !== null;
    };
    credentials._addWatcher(watcher);
    this.unwatch = () => credentials._removeWatcher(watcher);
    this.tls = tls;
  }

  /** Connections open now (all peers, in handshake or served). */
  get open(): number {
    return this.tracked.size;
  }

  /**
   * Listens on every address `host` resolves to (as grpc-js's bindAsync does), all on one
   * port; resolves with it (the one picked when `port` is 0). Fails only if no address binds.
   */
  async listen(host: string, port: number): Promise<number> {
    const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
    const addresses = isIP(bare) ? [bare] : [...new Set((await lookup(bare, { all: true })).map((a) => a.address))];
    const errors: string[] = [];
    let first: (Error & { code?: string }) | undefined;
    let bound = port;
    for (const address of addresses) {
      try {
        bound = await this.listenOne(address, bound);
      } catch (err) {
        first ??= err as Error;
        errors.push((err as Error).message);
      }
    }
    if (this.listeners.length === 0) {
      this.close();
      // Worded as grpc-js words it, with the first error's code (EADDRINUSE ...) kept.
      const error = new Error(`No address added out of total ${addresses.length} resolved errors: [${errors.join(",")}]`) as Error & { code?: string };
      if (first?.code) error.code = first.code;
      throw error;
    }
    if (errors.length > 0) this.logger.warn({ host, port: bound, errors }, "some of the addresses the listen host resolves to could not be bound");
    return bound;
  }

  private listenOne(address: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const listener = new NetServer({ noDelay: true });
      listener.once("error", reject);
      listener.listen({ host: address, port }, () => {
        listener.off("error", reject);
        // accept() can fail later (EMFILE when the process is out of descriptors): say so, never crash.
        listener.on("error", (err: Error) => {
          this.options.onRefused?.("accept_error");
          this.log.warn("accept_error", { err: err.message }, "accepting a connection failed");
        });
        listener.on("connection", (socket: Socket) => this.accept(socket));
        this.listeners.push(listener);
        const bound = listener.address();
        resolve(typeof bound === "object" && bound ? bound.port : port);
      });
    });
  }

  /** Stops listening and destroys the connections not yet handed to grpc-js (grpc-js's shutdown closes the others). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const listener of this.listeners) listener.close();
    for (const conn of [...this.tracked.values()]) if (!conn.injected) conn.raw.destroy();
    this.unwatch();
    this.log.close();
  }

  private accept(socket: Socket): void {
    // A socket error ends in "close", which is what the guard tracks.
    socket.on("error", () => {});
    const { limits } = this.options;
    // Closing, or a peer already gone (it has no address to count it by).
    if (this.closed || !socket.remoteAddress) return void socket.destroy();
    if (this.tracked.size >= limits.maxConnections) return this.refuse(socket, "max_connections", { limit: limits.maxConnections });
    const peer = peerKey(socket.remoteAddress);
    const fromPeer = this.perAddress.get(peer) ?? 0;
    const family = isIP(peer);
    const capped = family !== 0 && !this.exempt.check(peer, family === 4 ? "ipv4" : "ipv6");
    if (capped && fromPeer >= limits.maxConnectionsPerAddress) return this.refuse(socket, "max_connections_per_address", { limit: limits.maxConnectionsPerAddress });
    const key = tuple(socket);
    let released = false;
    const conn: Tracked = {
      raw: socket,
      injected: false,
      release: () => {
        if (released) return;
        released = true;
        clearTimeout(conn.handshakeTimer);
        this.tracked.delete(key);
        const left = (this.perAddress.get(peer) ?? 1) - 1;
        if (left > 0) this.perAddress.set(peer, left);
        else this.perAddress.delete(peer);
      },
    };
    this.tracked.set(key, conn);
    this.perAddress.set(peer, fromPeer + 1);
    socket.once("close", conn.release);
    if (!this.tls) return this.awaitPreface(socket, conn);
    if (!this.credentialsReady) return this.refuse(socket, "no_credentials", {});
    // Our own timer, from accept: Node's handshakeTimeout (set too, as a backstop) is an idle timeout.
    conn.handshakeTimer = setTimeout(() => this.refuse(socket, "tls_handshake_timeout", { limit_ms: limits.tlsHandshakeTimeoutMs }), limits.tlsHandshakeTimeoutMs);
    conn.handshakeTimer.unref();
    this.tls.emit("connection", socket);
  }

  /**
   * Reads until the client's preface and first SETTINGS are in, then gives the bytes back
   * (unshift) and hands the socket to grpc-js: Node's HTTP/2 session reads what is buffered
   * in its socket first (nodejs/node#35475). Past the deadline the connection is closed.
   */
  private awaitPreface(socket: Socket, conn: Tracked): void {
    // Chunks are joined only once enough has arrived, so bytes that trickle in cost no copying.
    const chunks: Buffer[] = [];
    let received = 0;
    let needed = PREFACE_HEAD;
    const timer = setTimeout(() => {
      socket.off("readable", onReadable);
      this.refuse(socket, "preface_timeout", { limit_ms: this.options.limits.prefaceTimeoutMs, received });
    }, this.options.limits.prefaceTimeoutMs);
    timer.unref();
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        chunks.push(chunk);
        received += chunk.length;
      }
      if (received < needed) return;
      const bytes = Buffer.concat(chunks, received);
      chunks.splice(0, chunks.length, bytes);
      const length = prefaceLength(bytes);
      if (length !== undefined && received < length) {
        needed = length;
        return;
      }
      clearTimeout(timer);
      socket.off("readable", onReadable);
      if (length === undefined) return this.refuse(socket, "bad_preface", { received });
      socket.unshift(bytes);
      conn.injected = true;
      this.injector.injectConnection(socket);
    };
    socket.on("readable", onReadable);
    socket.once("close", () => clearTimeout(timer));
  }

  private refuse(socket: Socket, reason: ConnectionRefusal, fields: Record<string, unknown>): void {
    const peer = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : "unknown";
    socket.destroy();
    this.options.onRefused?.(reason);
    this.log.warn(reason, { peer, ...fields }, "connection closed");
  }
}

/**
 * Makes a connection's peer certificate fixed, so it is parsed once rather than on every
 * call (grpc-js asks for it per call, twice with the guard; it was 5.8 % of a busy
 * coordinator's time). Renegotiation is refused first: it is the only way a TLS 1.2 peer
 * could present another certificate later on the same connection (TLS 1.3 has none).
 */
function pinPeerCertificate(socket: TLSSocket): void {
  socket.disableRenegotiation();
  // Node only reports the attempt (an "error" event); the connection would go on.
  socket.on("error", (err: NodeJS.ErrnoException) => err.code === "ERR_TLS_RENEGOTIATION_DISABLED" && socket.destroy());
  const read = socket.getPeerCertificate.bind(socket);
  let pinned: ReturnType<TLSSocket["getPeerCertificate"]> | undefined;
  socket.getPeerCertificate = ((detailed?: boolean) => (detailed ? read(true) : (pinned ??= read(false)))) as TLSSocket["getPeerCertificate"];
}
