import { ConfigError, whereToSet } from "../config.js";
import type { Logger } from "../logging.js";
import { checkSpiffeId, readCertificateInfo } from "../security/index.js";

/**
 * Refuses to start when the server's own certificate names another trust domain than the
 * configured one: its CA's clients would all be refused (their ids are in that other domain),
 * so the server would run and turn everyone away.
 */
export function checkOwnTrustDomain(certPem: string | Buffer, certFile: string, trustDomain: string, logger: Logger): void {
  const uris = readCertificateInfo(certPem.toString()).uris;
  const ids = uris.map(checkSpiffeId).flatMap((c) => (c.ok ? [c.identity] : []));
  if (ids.length === 0) {
    // Clients do not check the server's id, but participants called by this server (--only) do.
    logger.warn({ cert_file: certFile, uris }, "the server certificate carries no baton SPIFFE id; participants it calls will refuse it");
    return;
  }
  const foreign = ids.find((id) => id.trustDomain !== trustDomain);
  if (!foreign) return;
  throw new ConfigError(
    `the certificate ${certFile} is ${foreign.uri}, in trust domain ${foreign.trustDomain}, but the configured trust domain is ${trustDomain}, so every peer would be refused: ` +
      `set ${whereToSet("tls.trustDomain")} to ${foreign.trustDomain}, or use certificates issued for ${trustDomain}`,
  );
}

/**
 * A failure to listen, as the setting to change when it is one (the address is taken, not
 * this host's, or a privileged port); anything else is returned as it is.
 */
export function listenFailure(err: unknown, address: string, setting: "listen" | "adminListen"): unknown {
  const code = (err as { code?: unknown } | undefined)?.code;
  const why = code === "EADDRINUSE" ? "is in use" : code === "EADDRNOTAVAIL" ? "is not an address of this host" : code === "EACCES" ? "may not be bound by this user (a port below 1024?)" : undefined;
  if (!why) return err;
  const off = setting === "adminListen" ? `, or to "" to turn the admin endpoint off` : "";
  return new ConfigError(`${address} ${why}: set ${whereToSet(setting)} to another host:port${off}`, { cause: err });
}
