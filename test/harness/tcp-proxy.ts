import { createServer, connect, type Server, type Socket } from "node:net";

/** Where the proxy forwards to. */
export interface ProxyOptions {
  target: { host: string; port: number };
  listenHost?: string;
}

interface Pair {
  client: Socket;
  upstream: Socket;
}

/**
 * A fault-injecting TCP proxy for tests, in the spirit of toxiproxy: it can cut every
 * connection, black-hole traffic (accept, pass nothing), delay it, or refuse new
 * connections. Loopback only.
 */
export class TcpProxy {
  private server: Server | undefined;
  private readonly pairs = new Set<Pair>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private holed = false;
  private refusing = false;
  private delayMs = 0;
  private boundPort = 0;

  constructor(private options: ProxyOptions) {}

  /** The bound port. */
  get port(): number {
    return this.boundPort;
  }

  /** Live connection pairs. */
  get connections(): number {
    return this.pairs.size;
  }

  /** Listens on 127.0.0.1:0; resolves with the port. */
  async start(): Promise<number> {
    this.server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve) => this.server!.listen(0, this.options.listenHost ?? "127.0.0.1", resolve));
    this.boundPort = (this.server.address() as { port: number }).port;
    return this.boundPort;
  }

  private accept(client: Socket): void {
    if (this.refusing) {
      client.destroy();
      return;
    }
    const upstream = connect(this.options.target.port, this.options.target.host);
    const pair: Pair = { client, upstream };
    this.pairs.add(pair);
    const drop = () => {
      if (!this.pairs.delete(pair)) return;
      client.destroy();
      upstream.destroy();
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    this.forward(client, upstream);
    this.forward(upstream, client);
  }

  private forward(from: Socket, to: Socket): void {
    // Delayed chunks keep their order: each waits for the one before it.
    let chain = Promise.resolve();
    from.on("data", (chunk: Buffer) => {
      // A black hole swallows bytes; they stay lost after heal(), as in a real partition.
      if (this.holed) return;
      if (this.delayMs > 0) {
        const wait = this.delayMs;
        chain = chain.then(
          () =>
            new Promise<void>((resolve) => {
              const t = setTimeout(() => {
                this.timers.delete(t);
                if (!to.destroyed) to.write(chunk);
                resolve();
              }, wait);
              this.timers.add(t);
            }),
        );
        return;
      }
      if (!to.write(chunk)) {
        from.pause();
        to.once("drain", () => from.resume());
      }
    });
  }

  /** Points new connections at another target (a restarted server on a new port). */
  retarget(target: { host: string; port: number }): void {
    this.options.target = target;
  }

  /** Destroys every open connection now; new ones still work. */
  cut(): void {
    for (const pair of [...this.pairs]) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
  }

  /** Passes no bytes either way, on old and new connections, until heal(). */
  blackhole(): void {
    this.holed = true;
  }

  /** Adds latency to every chunk in both directions; 0 removes it. */
  delay(ms: number): void {
    this.delayMs = ms;
  }

  /** Closes new connections at once until heal(); existing ones keep working. */
  refuse(): void {
    this.refusing = true;
  }

  /** Back to normal. */
  heal(): void {
    this.holed = false;
    this.refusing = false;
    this.delayMs = 0;
  }

  /** Closes the listener and every connection. */
  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.cut();
    if (this.server) await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }
}
