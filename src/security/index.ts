export { ROLES, checkSpiffeId, isRole, isValidSegment, parseSpiffeId, spiffeId, type RoleName, type SpiffeCheck, type SpiffeIdentity } from "./spiffe.js";
export { parseSubjectAltName, type SubjectAltNameEntry } from "./subject-alt-name.js";
export { identityFromPeerCertificate, identityFromUri, type IdentityResult } from "./identity.js";
export { caTrustDomain, certificateProblem, createCertificateAuthority, issueCertificate, readCertificateInfo, type CaOptions, type CertificateInfo, type IssueOptions, type IssuedPem } from "./certs.js";
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
export { renewInDirectory, revokeInDirectory, revokedFile, type RenewedCertificate, type RenewInDirectoryOptions, type RevokedInDirectory, type RevokeInDirectoryOptions } from "./cert-store.js";
export { DEFAULT_REVOKED_FILE, normalizeSerial, readDenyList, revokeCertificate, type RevokedEntry, type RevokeRequest } from "./revocation.js";
export * from "./message/index.js";
export { createPolicy, loadPolicy, CAPABILITIES, CONTROL_READS, DEFAULT_POLICY, FORWARD_CAPABILITY, METHOD_CAPABILITIES, PolicyError, type Policy, type PolicyRules } from "./policy.js";
export { addressList, createAuthenticator, FORWARDED_IDENTITY_HEADER, FORWARDED_SERIAL_HEADER, peerHost, type Authentication, type Authenticator, type Denial, type AuthenticatorOptions, type PeerCredentials } from "./authenticator.js";
export { parseXfcc, uriFromXfcc, XFCC_HEADER, type XfccElement, type XfccParse } from "./xfcc.js";
