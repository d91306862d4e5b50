import { createPrivateKey, X509Certificate } from "node:crypto";
import { unwatchFile, watchFile } from "node:fs";
import { experimental, type ServerCredentials } from "@grpc/grpc-js";
import type { Logger } from "../logging.js";
import { normalizeSerial } from "../security/index.js";
import { readTlsFiles, type TlsFiles } from "./credentials.js";

type CaListener = (update: { caCertificate: Buffer } | null) => void;
type IdentityListener = (update: { certificate: Buffer; privateKey: Buffer } | null) => void;

/** Server credentials that follow their files, and how to stop following them. */
export interface ReloadingCredentials {
  credentials: ServerCredentials;
  /** Stops watching the files. */
  close(): void;
}

/** Options of reloadingServerCredentials. */
export interface ReloadingOptions {
  /** How often the files are checked, ms. */
  intervalMs: number;
  logger: Logger;
}

interface Material {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  serial: string;
}

/** Reads the files and checks they make a usable identity; throws saying what is wrong. */
function load(files: TlsFiles): Material {
  const { ca, cert, key } = readTlsFiles(files);
  const x509 = new X509Certificate(cert);
  if (!x509.checkPrivateKey(createPrivateKey(key))) throw new Error(`the key ${files.keyFile} does not match the certificate ${files.certFile}`);
  if (Date.parse(x509.validTo) <= Date.now()) throw new Error(`the certificate ${files.certFile} expired on ${x509.validTo}`);
  const issuers = [new X509Certificate(ca)];
  if (!issuers.some((issuer) => x509.checkIssued(issuer) && x509.verify(issuer.publicKey))) throw new Error(`the certificate ${files.certFile} is not signed by the CA in ${files.caFile}`);
  return { ca, cert, key, serial: normalizeSerial(x509.serialNumber) };
}

/**
 * Mutual-TLS server credentials that pick up renewed files without a restart: the files
 * are polled, and a new certificate is used for new connections once it loads, matches
 * its key, chains to the CA and is in date. Live connections keep their session. A bad
 * renewal is logged and the previous certificate stays in use, rather than the server
 * refusing every handshake (what grpc-js's own FileWatcherCertificateProvider would do).
 */
export function reloadingServerCredentials(files: TlsFiles, options: ReloadingOptions): ReloadingCredentials {
  let current = load(files);
  const caListeners = new Set<CaListener>();
  const identityListeners = new Set<IdentityListener>();
  const provider = {
    addCaCertificateListener(listener: CaListener) {
      caListeners.add(listener);
      // Asynchronously: grpc-js registers its context watcher only after this returns.
      setImmediate(() => caListeners.has(listener) && listener({ caCertificate: current.ca }));
    },
    removeCaCertificateListener(listener: CaListener) {
      caListeners.delete(listener);
    },
    addIdentityCertificateListener(listener: IdentityListener) {
      identityListeners.add(listener);
      setImmediate(() => identityListeners.has(listener) && listener({ certificate: current.cert, privateKey: current.key }));
    },
    removeIdentityCertificateListener(listener: IdentityListener) {
      identityListeners.delete(listener);
    },
  };

  let timer: NodeJS.Timeout | undefined;
  const reload = () => {
    let next: Material;
    try {
      next = load(files);
    } catch (err) {
      options.logger.error({ err: (err as Error).message }, "renewed TLS files are not usable; still serving the previous certificate");
      return;
    }
    if (next.cert.equals(current.cert) && next.key.equals(current.key) && next.ca.equals(current.ca)) return;
    const previous = current.serial;
    current = next;
    for (const listener of caListeners) listener({ caCertificate: current.ca });
    for (const listener of identityListeners) listener({ certificate: current.cert, privateKey: current.key });
    options.logger.info({ serial: current.serial, previous_serial: previous }, "TLS certificate reloaded");
  };
  // Key and certificate are renamed into place one after the other: wait for both.
  const changed = () => {
    clearTimeout(timer);
    timer = setTimeout(reload, 100);
    timer.unref();
  };
  const paths = [files.caFile, files.certFile, files.keyFile];
  for (const path of paths) watchFile(path, { interval: options.intervalMs, persistent: false }, changed);

  // The same provider serves CA and identity (grpc-js 1.14 also swaps the two parameters).
  const credentials = experimental.createCertificateProviderServerCredentials(provider, provider, true);
  return {
    credentials,
    close() {
      clearTimeout(timer);
      for (const path of paths) unwatchFile(path, changed);
    },
  };
}
