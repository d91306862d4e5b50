import { once } from "node:events";
import { createServer, connect, type AddressInfo, type Server, type Socket } from "node:net";

/** Where a TcpProxy forwards to, and where it listens (loopback by default). */
export interface ProxyOptions {
  target: { host: string; port: number };
  listenHost?: string;
}

/** The faults in force now; every flow reads them on each chunk, so changes apply at once. */
interface Faults {
  holed: boolean;
  delayMs: number;
}

/**
 * Bytes a delayed flow may hold before it pauses its source. Without a bound, a fast
 * sender behind a long delay would make the proxy buffer without limit.
 */
const DELAY_HIGH_WATER = 1024 * 1024;

/**
 * One direction of a connection pair. Chunks go straight through when there is no delay
 * (with pause/drain backpressure), or through a FIFO delay line otherwise. The FIN travels
 * through the same line as a `null` chunk, so it never overtakes delayed data.
 */
class Flow {
  private queue: Array<{ chunk: Buffer | null; due: number }> = [];
  private queuedBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private awaitingDrain = false;
  /** A FIN that arrived (or came due) during a black hole, handed on at heal(). */
  private heldEnd = false;

  constructor(
    private readonly from: Socket,
    private readonly to: Socket,
    private readonly faults: Faults,
  ) {
    from.on("data", (chunk: Buffer) => this.push(chunk));
    from.on("end", () => this.push(null));
    to.on("drain", () => {
      this.awaitingDrain = false;
      this.maybeResume();
    });
  }

  /** Hands on a FIN held back by a black hole; dropped bytes are not replayed. */
  heal(): void {
    if (!this.heldEnd) return;
    this.heldEnd = false;
    if (!this.to.destroyed) this.to.end();
  }

  /** Drops queued chunks and the pending timer, so a closed pair leaves nothing behind. */
  dispose(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.queue = [];
    this.queuedBytes = 0;
  }

  private push(chunk: Buffer | null): void {
    if (chunk !== null && this.faults.holed) return;
    const ms = this.faults.delayMs;
    // Once anything is queued, later chunks queue behind it even at delay 0, to keep order.
    if (ms <= 0 && this.queue.length === 0) {
      this.deliver(chunk);
      return;
    }
    this.queue.push({ chunk, due: performance.now() + Math.max(0, ms) });
    if (chunk !== null) this.queuedBytes += chunk.length;
    if (this.queuedBytes > DELAY_HIGH_WATER) this.from.pause();
    this.schedule();
  }

  private schedule(): void {
    const head = this.queue[0];
    if (this.timer !== undefined || head === undefined) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.flush();
      },
      Math.max(0, head.due - performance.now()),
    ).unref();
  }

  private flush(): void {
    const now = performance.now();
    // FIFO: a chunk queued under a shorter delay still waits for the ones ahead of it.
    while (this.queue[0] !== undefined && this.queue[0].due <= now) {
      const { chunk } = this.queue.shift()!;
      if (chunk !== null) this.queuedBytes -= chunk.length;
      this.deliver(chunk);
    }
    this.maybeResume();
    this.schedule();
  }

  private deliver(chunk: Buffer | null): void {
    if (this.to.destroyed) return;
    if (chunk === null) {
      if (this.faults.holed) this.heldEnd = true;
      else this.to.end();
      return;
    }
    // A black hole also swallows chunks that were already in the delay line.
    if (this.faults.holed) return;
    if (!this.to.write(chunk)) {
      this.awaitingDrain = true;
      this.from.pause();
    }
  }

  private maybeResume(): void {
    if (this.awaitingDrain || this.queuedBytes > DELAY_HIGH_WATER || this.from.destroyed) return;
    this.from.resume();
  }
}

/** A client connection and the upstream connection the proxy opened for it. */
interface Pair {
  client: Socket;
  upstream: Socket;
  flows: [Flow, Flow];
}

/**
 * Closes a socket with a TCP RST when it can, so the peer sees ECONNRESET as after a real
 * network fault rather than an orderly FIN. A socket still connecting has sent nothing,
 * and `resetAndDestroy()` would wait for it to connect, so that one is just destroyed.
 */
function reset(socket: Socket): void {
  if (socket.destroyed) return;
  if (socket.connecting) socket.destroy();
  else socket.resetAndDestroy();
}

/**
 * A fault-injecting TCP proxy for tests, in the spirit of toxiproxy: it can cut every
 * connection, black-hole traffic (accept, pass nothing), delay it, or refuse new
 * connections. Listens on loopback only unless told otherwise.
 */
export class TcpProxy {
  private readonly server: Server;
  private readonly listenHost: string;
  private target: { host: string; port: number };
  private readonly pairs = new Set<Pair>();
  private readonly faults: Faults = { holed: false, delayMs: 0 };
  private refusing = false;
  private state: "new" | "listening" | "stopped" = "new";
  private boundPort = 0;

  constructor(options: ProxyOptions) {
    this.target = { ...options.target };
    this.listenHost = options.listenHost ?? "127.0.0.1";
    // Half-open on: a FIN is passed on as a FIN, so a peer that ends its side still gets
    // the other side's remaining bytes.
    this.server = createServer({ allowHalfOpen: true }, (client) => this.accept(client));
  }

  /** The bound port; 0 before start(). */
  get port(): number {
    return this.boundPort;
  }

  /** Live connection pairs: accepted, and not yet closed on both sides. */
  get connections(): number {
    return this.pairs.size;
  }

  /** Listens on listenHost:0; resolves with the bound port. */
  async start(): Promise<number> {
    if (this.state !== "new") throw new Error(`TcpProxy.start() called when ${this.state}`);
    this.state = "listening";
    this.server.listen(0, this.listenHost);
    await once(this.server, "listening");
    this.boundPort = (this.server.address() as AddressInfo).port;
    return this.boundPort;
  }

  /** Points new connections at another target (a restarted server on a new port); live ones stay put. */
  retarget(target: { host: string; port: number }): void {
    this.target = { ...target };
  }

  /** Resets every open connection pair now (both sides see a reset); new connections still work. */
  cut(): void {
    for (const pair of this.pairs) {
      reset(pair.client);
      reset(pair.upstream);
    }
  }

  /** Accepts connections but passes no bytes either way, on live and new ones, until heal(); bytes meanwhile are dropped. */
  blackhole(): void {
    this.faults.holed = true;
  }

  /** Adds `ms` of latency to every chunk in both directions, keeping order per direction; 0 removes it. */
  delay(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`delay must be a finite number >= 0, got ${ms}`);
    this.faults.delayMs = ms;
  }

  /** Resets new connections as soon as they are accepted, until heal(); live ones keep working. */
  refuse(): void {
    this.refusing = true;
  }

  /**
   * Back to normal: no black hole, no refusal, no delay. Bytes dropped by a black hole stay
   * dropped and new bytes flow on the same connections, as toxiproxy does when a timeout
   * toxic is removed. That is the simplest rule, but note it is harsher than a real healed
   * partition, where TCP would retransmit: a framed protocol (HTTP/2, so gRPC) on a
   * connection that lost bytes will usually fail with a protocol error after heal(), while
   * new connections are clean. A FIN held back by the black hole is passed on now. Chunks
   * already in a delay line still arrive late.
   */
  heal(): void {
    this.faults.holed = false;
    this.faults.delayMs = 0;
    this.refusing = false;
    for (const pair of this.pairs) for (const flow of pair.flows) flow.heal();
  }

  /** Closes the listener and every connection; clears every timer. */
  async stop(): Promise<void> {
    if (this.state === "stopped") return;
    const wasListening = this.state === "listening";
    this.state = "stopped";
    const closed = wasListening ? new Promise<void>((resolve) => this.server.close(() => resolve())) : Promise.resolve();
    for (const pair of this.pairs) {
      for (const flow of pair.flows) flow.dispose();
      pair.client.destroy();
      pair.upstream.destroy();
    }
    // server.close() waits for every accepted socket to close, which the destroys above ensure.
    await closed;
  }

  private accept(client: Socket): void {
    if (this.refusing || this.state !== "listening") {
      client.on("error", () => {});
      reset(client);
      return;
    }
    const upstream = connect({ host: this.target.host, port: this.target.port, allowHalfOpen: true });
    const pair: Pair = {
      client,
      upstream,
      flows: [new Flow(client, upstream, this.faults), new Flow(upstream, client, this.faults)],
    };
    this.pairs.add(pair);
    // A failure on one side (a reset, or the target refusing us) is passed on as a reset,
    // so the client sees what it would have seen without the proxy.
    client.on("error", () => reset(upstream));
    upstream.on("error", () => reset(client));
    let open = 2;
    const onClose = (other: Socket) => {
      // After an orderly close both FINs have been passed on; ending the other side (if not
      // already ended) makes sure it cannot linger once its peer is gone.
      if (!other.destroyed && !other.writableEnded) other.end();
      if (--open > 0) return;
      for (const flow of pair.flows) flow.dispose();
      this.pairs.delete(pair);
    };
    client.on("close", () => onClose(upstream));
    upstream.on("close", () => onClose(client));
  }
}
