export { ROLES, checkSpiffeId, isRole, isValidSegment, parseSpiffeId, spiffeId, type RoleName, type SpiffeCheck, type SpiffeIdentity } from "./spiffe.js";
export { parseSubjectAltName, type SubjectAltNameEntry } from "./subject-alt-name.js";
export { identityFromPeerCertificate, type IdentityResult } from "./identity.js";
export { caTrustDomain, createCertificateAuthority, issueCertificate, readCertificateInfo, type CaOptions, type CertificateInfo, type IssueOptions, type IssuedPem } from "./certs.js";
export {
  DEFAULT_CERTS_DIR,
  DEFAULT_TRUST_DOMAIN,
  ensureDevelopmentCertificates,
  initCertificateAuthority,
  issueToDirectory,
  type CertPaths,
  type DevelopmentCertificates,
  type DevelopmentCertificatesOptions,
  type InitCaOptions,
  type IssueToDirectoryOptions,
  type TlsFileContents,
} from "./cert-store.js";
