import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { isLoopbackHost, parseListen, type BatonConfig } from "../config.js";
import type { BatonServer } from "./baton-server.js";

/** What the start-up banner says: where the server listens, where its certificates and data are, what to try next. */
export function startupBanner(server: BatonServer, config: BatonConfig): string[] {
  const { host } = parseListen(config.listen);
  // TLS names match localhost, not 127.0.0.1: the address to dial is the one printed.
  const dial = `${isLoopbackHost(host) ? "localhost" : host}:${server.port}`;
  const admin = server.adminPort ? `http://${parseListen(config.adminListen, "adminListen").host}:${server.adminPort}` : "";
  const certs = resolve(config.tls.certsDir);
  const operatorCert = join(config.tls.certsDir, "operator.pem");
  const hasOperator = existsSync(operatorCert);
  const lines = [
    `baton is serving (${server.health.services.filter((s) => s.startsWith("baton.")).join(", ")})`,
    `  gRPC       ${dial}${config.mesh.enabled ? " (plaintext behind the mesh)" : ` (mutual TLS, trust domain ${config.tls.trustDomain})`}`,
    admin ? `  admin      ${admin}/metrics  ${admin}/healthz  ${admin}/readyz` : "  admin      off (adminListen is \"\")",
  ];
  const dashboard = server.dashboardUrl;
  if (dashboard) lines.push(`  dashboard  ${dashboard}`);
  lines.push(
    `  certs      ${certs} (CA ${config.tls.caFile}${hasOperator ? `, operator ${operatorCert}` : ""})`,
    config.store.kind === "sqlite" ? `  data       ${resolve(config.store.dataDir)} (SQLite journal)` : "  data       in memory: nothing survives a restart (store.kind memory)",
    "",
    "next:",
    hasOperator
      ? `  baton context add local --address ${dial} --ca ${config.tls.caFile} --cert ${operatorCert} --key ${join(config.tls.certsDir, "operator.key")} --select`
      : `  baton certs issue --role operator --name operator --dir ${config.tls.certsDir}   (an operator certificate, then baton context add)`,
    "  baton watch                 (agents, tasks and rounds, live)",
    "  baton task submit --help",
    `stop with Ctrl-C or SIGTERM: work in flight may finish for ${Math.round(config.drainGraceMs / 1000)} s (drainGraceMs); a second signal forces`,
  );
  return lines;
}

/** Prints the banner when `out` is a terminal (nothing when piped or collected: logs there are for machines). */
export function printStartupBanner(server: BatonServer, config: BatonConfig, out: NodeJS.WriteStream = process.stdout): void {
  if (!out.isTTY) return;
  out.write(`\n${startupBanner(server, config).join("\n")}\n\n`);
}
