import { ConfigError, whereToSet, type BatonConfig } from "../config.js";
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

// The certificate each participant running on its own should have, and an example name.
const OWN_ROLE: Partial<Record<BatonConfig["services"]["only"], { role: string; name: string; participant: string }>> = {
  "resource-manager": { role: "resource_manager", name: "rm-1", participant: "Resource Manager" },
  "performance-monitor": { role: "performance_monitor", name: "pm-1", participant: "Performance Monitor" },
};

/**
 * Refuses to start a Resource Manager or Performance Monitor of its own on a coordinator's
 * certificate: a coordinator may forward Control reads naming any caller (control.forward),
 * so a compromised RM holding one would read everything as any operator.
 */
export function checkOwnRole(certPem: string | Buffer, certFile: string, only: BatonConfig["services"]["only"]): void {
  const own = OWN_ROLE[only];
  if (!own) return;
  const ids = readCertificateInfo(certPem.toString()).uris.map(checkSpiffeId).flatMap((c) => (c.ok ? [c.identity] : []));
  const coordinator = ids.find((id) => id.role === "coordinator");
  if (!coordinator) return;
  throw new ConfigError(
    `the certificate ${certFile} is ${coordinator.uri}, a coordinator's, and this process runs only the ${own.participant} (services.only ${only}); a coordinator's certificate may forward Control reads for any caller, so it must stay with the coordinators: ` +
      `issue a ${own.role} certificate (baton certs issue --role ${own.role} --name ${own.name}) and set ${whereToSet("tls.certFile")} and ${whereToSet("tls.keyFile")} to its files`,
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
