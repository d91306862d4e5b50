/** A configuration that cannot work; the message says which setting and why. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** Splits "host:port" (or "[::1]:port"). */
export function parseListen(listen: string, setting = "listen"): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(listen);
  if (!m || Number(m[2]) > 65535) throw new ConfigError(`${setting} must be host:port, got ${JSON.stringify(listen)}`);
  return { host: m[1]!, port: Number(m[2]) };
}

/** Whether a listen host ("127.0.0.1", "[::1]", "localhost") is a loopback address. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\./.test(h);
}
