import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCertificateAuthority, issueCertificate, type IssuedPem, type RoleName } from "../../src/security/index.js";
import { clientCredentials } from "../../src/rpc/index.js";
import type { ChannelCredentials } from "@grpc/grpc-js";

/** A throwaway PKI for one test file: a CA and a server certificate for localhost. */
export interface TestPki {
  trustDomain: string;
  ca: IssuedPem;
  server: IssuedPem;
  /** Issues a certificate from this CA. */
  issue(role: RoleName, name: string, extra?: Record<string, unknown>): Promise<IssuedPem>;
  /** Client credentials for a fresh certificate of this CA. */
  credentials(role: RoleName, name: string): Promise<ChannelCredentials>;
  /** Writes PEMs to a temp folder, for child processes and buf curl. */
  writeFiles(files: Record<string, string>): string;
  cleanup(): void;
}

/** Makes a CA and a coordinator certificate (RSA keys from node:crypto, fast). */
export async function makePki(trustDomain = "baton.local"): Promise<TestPki> {
  const ca = await createCertificateAuthority({ trustDomain });
  const issue = (role: RoleName, name: string, extra: Record<string, unknown> = {}) =>
    issueCertificate({ ca, trustDomain, role, name, ...extra });
  const server = await issue("coordinator", "coordinator");
  const dirs: string[] = [];
  return {
    trustDomain,
    ca,
    server,
    issue,
    async credentials(role, name) {
      const leaf = await issue(role, name);
      return clientCredentials({ ca: ca.certPem, cert: leaf.certPem, key: leaf.keyPem });
    },
    writeFiles(files) {
      const dir = mkdtempSync(join(tmpdir(), "baton-pki-"));
      dirs.push(dir);
      for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content, { mode: 0o600 });
      return dir;
    },
    cleanup() {
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    },
  };
}
