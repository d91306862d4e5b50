export { ROLES, isRole, isValidSegment, parseSpiffeId, spiffeId, type RoleName, type SpiffeIdentity } from "./spiffe.js";
export { identityFromPeerCertificate, parseSubjectAltName, type IdentityResult } from "./identity.js";
export { createCertificateAuthority, issueCertificate, readCertificateInfo, type CaOptions, type CertificateInfo, type IssueOptions, type IssuedPem } from "./certs.js";
export { ensureDevelopmentCertificates, initCertificateAuthority, issueToDirectory, type CertPaths } from "./cert-store.js";
