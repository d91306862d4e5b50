// The bench's PKI: a CA, the coordinator's and an operator's certificates, and one
// certificate per agent name (an agent's identity must match its Hello). Agent
// certificates share one key, as test/security/hundred-agents.test.ts does, and are kept
// in .baton-tmp/bench-pki so 10,000 of them are issued once, not on every run.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../../test/helpers/process.js";
import { createCertificateAuthority, issueCertificate, readCertificateInfo, type IssuedPem } from "../../src/security/index.js";

const TRUST_DOMAIN = "baton.local";
const CACHE = join(ROOT, ".baton-tmp", "bench-pki");
// Re-issue what expires within a week: a cached PKI must outlive the run.
const MIN_LIFE_MS = 7 * 86_400_000;

/** The name of agent i (also its certificate's SPIFFE name). */
export const agentName = (i: number): string => `bench-agent-${String(i).padStart(5, "0")}`;

/** Paths of the PEM files, for child processes. */
export interface BenchPki {
  dir: string;
  trustDomain: string;
  caFile: string;
  coordinatorCert: string;
  coordinatorKey: string;
  operatorCert: string;
  operatorKey: string;
  /** The key every agent certificate certifies. */
  agentKey: string;
  /** JSON array of agent certificate PEMs, index i for agentName(i). */
  agentCerts: string;
  /** How many agent certificates agentCerts holds. */
  agents: number;
}

function fresh(certPem: string): boolean {
  return readCertificateInfo(certPem).notAfter.getTime() - Date.now() > MIN_LIFE_MS;
}

function write(path: string, content: string): void {
  writeFileSync(path, content, { mode: 0o600 });
}

/** The bench PKI with at least `agents` agent certificates, issuing what the cache lacks. */
export async function benchPki(agents: number, log: (line: string) => void = () => {}): Promise<BenchPki> {
  mkdirSync(CACHE, { recursive: true });
  const p = (name: string) => join(CACHE, name);
  const paths = {
    dir: CACHE,
    trustDomain: TRUST_DOMAIN,
    caFile: p("ca.pem"),
    coordinatorCert: p("coordinator.pem"),
    coordinatorKey: p("coordinator.key"),
    operatorCert: p("operator.pem"),
    operatorKey: p("operator.key"),
    agentKey: p("agent.key"),
    agentCerts: p("agents.json"),
  };
  const complete = [...Object.values(paths).slice(2), p("ca.key")].every((f) => existsSync(f));
  let ca: IssuedPem;
  let certs: string[] = [];
  if (complete && fresh(readFileSync(paths.caFile, "utf8")) && fresh(readFileSync(paths.coordinatorCert, "utf8"))) {
    ca = { certPem: readFileSync(paths.caFile, "utf8"), keyPem: readFileSync(p("ca.key"), "utf8"), serial: "" };
    certs = JSON.parse(readFileSync(paths.agentCerts, "utf8")) as string[];
    if (certs.length > 0 && !fresh(certs[0]!)) certs = [];
  } else {
    log("bench PKI: making a CA, coordinator, operator and agent key");
    ca = await createCertificateAuthority({ trustDomain: TRUST_DOMAIN });
    write(paths.caFile, ca.certPem);
    write(p("ca.key"), ca.keyPem);
    const issue = (role: "coordinator" | "operator" | "managed_agent", name: string) => issueCertificate({ ca, trustDomain: TRUST_DOMAIN, role, name });
    const server = await issue("coordinator", "coordinator");
    write(paths.coordinatorCert, server.certPem);
    write(paths.coordinatorKey, server.keyPem);
    const operator = await issue("operator", "bench");
    write(paths.operatorCert, operator.certPem);
    write(paths.operatorKey, operator.keyPem);
    write(paths.agentKey, (await issue("managed_agent", agentName(0))).keyPem);
  }
  if (certs.length < agents) {
    const keyPem = readFileSync(paths.agentKey, "utf8");
    const t0 = performance.now();
    log(`bench PKI: issuing ${agents - certs.length} agent certificates (kept in ${CACHE} for later runs)`);
    for (let i = certs.length; i < agents; i++) {
      certs.push((await issueCertificate({ ca, trustDomain: TRUST_DOMAIN, role: "managed_agent", name: agentName(i), keyPem })).certPem);
    }
    write(paths.agentCerts, JSON.stringify(certs));
    log(`bench PKI: issued in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  return { ...paths, agents: certs.length };
}
