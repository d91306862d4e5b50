import { readFileSync } from "node:fs";
import { credentials, ServerCredentials, type ChannelCredentials } from "@grpc/grpc-js";

/** PEM material, as file paths or contents. */
export interface TlsMaterial {
  /** CA bundle (PEM) that the peer's certificate must chain to. */
  ca: string | Buffer;
  /** This side's certificate chain (PEM). */
  cert: string | Buffer;
  /** This side's private key (PEM). */
  key: string | Buffer;
}

/** Paths of PEM files. */
export interface TlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

function read(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read the ${what} ${path}: ${(err as Error).message} (run \`baton certs init\`, or serve with --dev-certs)`);
  }
}

/** Reads the three PEM files; a missing file is named in the error. */
export function readTlsFiles(files: TlsFiles): { ca: Buffer; cert: Buffer; key: Buffer } {
  return { ca: read(files.caFile, "CA certificate"), cert: read(files.certFile, "certificate"), key: read(files.keyFile, "private key") };
}

const buf = (v: string | Buffer) => (typeof v === "string" ? Buffer.from(v) : v);

/** Server credentials for mutual TLS: a client without a certificate from the CA fails the handshake. */
export function serverCredentials(tls: TlsMaterial): ServerCredentials {
  return ServerCredentials.createSsl(buf(tls.ca), [{ cert_chain: buf(tls.cert), private_key: buf(tls.key) }], true);
}

/** Client credentials for mutual TLS. */
export function clientCredentials(tls: TlsMaterial): ChannelCredentials {
  return credentials.createSsl(buf(tls.ca), buf(tls.key), buf(tls.cert));
}
