// `baton/certs`: make and manage the mutual-TLS certificates of a baton deployment, and the
// client credentials agents and operators dial with.
export {
  ROLES,
  createCertificateAuthority,
  ensureDevelopmentCertificates,
  initCertificateAuthority,
  issueCertificate,
  issueToDirectory,
  readCertificateInfo,
  renewInDirectory,
  revokeInDirectory,
  type CertificateInfo,
  type IssuedPem,
  type RoleName,
} from "./security/index.js";
export { clientCredentials, readTlsFiles, serverCredentials, type TlsFiles, type TlsMaterial } from "./rpc/index.js";
