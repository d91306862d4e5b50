import type { IncomingMessage } from "node:http";
import type { TLSSocket } from "node:tls";
import { isLoopbackHost } from "../config.js";
import { BatonError, permissionDenied, unauthenticated } from "../errors.js";
import type { CallGuard, PeerInfo } from "../rpc/index.js";
import { spiffeId, type Policy, type SpiffeIdentity } from "../security/index.js";

/** Who is calling the dashboard. */
export interface DashboardCaller {
  /** From the client certificate; on loopback without TLS, the local operator. */
  identity: SpiffeIdentity;
  peer: PeerInfo;
}

/** How callers are recognized: on loopback anyone who reaches the port is the host's operator; with mutual TLS, the certificate says who. */
export type CallerMode = { kind: "loopback"; trustDomain: string } | { kind: "mutual-tls"; authenticate: (peer: PeerInfo, headers: ReadonlyMap<string, string>) => SpiffeIdentity };

/** The header every action carries: a page from another origin cannot set it without a CORS preflight, which the dashboard never grants. */
export const ACTION_HEADER = "x-baton-dashboard";

function headerMap(req: IncomingMessage): Map<string, string> {
  const headers = new Map<string, string>();
  for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers.set(k, v);
  return headers;
}

/** The host part of a Host header ("localhost:9464", "[::1]:9464"). */
function hostOf(header: string): string {
  const m = /^(\[[^\]]*\]|[^:]*)(?::\d+)?$/.exec(header);
  return m ? m[1]! : header;
}

/**
 * The caller of a request, or why it has none. On loopback the Host header must name a
 * loopback host too, so a page on another site whose name resolves to 127.0.0.1 (DNS
 * rebinding) cannot read the dashboard from an operator's browser.
 */
export function resolveCaller(req: IncomingMessage, mode: CallerMode): DashboardCaller {
  const socket = req.socket as Partial<TLSSocket>;
  const address = `${req.socket.remoteAddress ?? ""}:${req.socket.remotePort ?? 0}`;
  if (mode.kind === "loopback") {
    const host = hostOf(req.headers.host ?? "");
    if (!isLoopbackHost(host)) throw permissionDenied(`the dashboard on a loopback port answers only to a loopback Host (localhost, 127.0.0.1, [::1]), not ${JSON.stringify(host.slice(0, 64))}`);
    const uri = spiffeId(mode.trustDomain, "operator", "dashboard-local");
    return { identity: { uri, trustDomain: mode.trustDomain, role: "operator", name: "dashboard-local" }, peer: { address, certificate: undefined } };
  }
  // requestCert without rejectUnauthorized: /metrics and the probes stay open over TLS, the dashboard needs a certificate from the CA.
  if (!socket.authorized) throw unauthenticated(`the dashboard needs a client certificate from the coordinator's CA (an operator's)${socket.authorizationError ? `: ${String(socket.authorizationError)}` : ""}`);
  const certificate = socket.getPeerCertificate?.();
  const peer: PeerInfo = { address, certificate };
  return { identity: mode.authenticate(peer, headerMap(req)), peer };
}

/**
 * Refuses what the caller may not do, by the Control method the dashboard call stands for:
 * with mutual TLS the same guard as every gRPC call (policy, revocation, refusal counted and
 * logged); on loopback the policy's operator role.
 */
export function authorize(caller: DashboardCaller, method: string, mode: CallerMode, guard: CallGuard, policy: Policy): BatonError | undefined {
  if (mode.kind === "mutual-tls") return guard({ method, peer: caller.peer, headers: new Map() });
  const capability = policy.capabilityOf(method);
  if (!capability) return permissionDenied(`${method} has no capability in the policy, so no one may call it`);
  if (!policy.allows(caller.identity.role, capability)) return permissionDenied(`${caller.identity.uri} (role ${caller.identity.role}) lacks the capability ${capability} that ${method} needs`);
  return undefined;
}

/** Refuses an action (POST) that does not carry the dashboard's header, or comes from another origin. */
export function checkAction(req: IncomingMessage): BatonError | undefined {
  if (req.headers[ACTION_HEADER] !== "1") return permissionDenied(`an action needs the ${ACTION_HEADER}: 1 header (it keeps other sites' pages from acting through an operator's browser)`);
  const origin = req.headers.origin;
  if (origin && origin !== "null") {
    let host = "";
    try {
      host = new URL(origin).host;
    } catch {
      // An unreadable Origin is refused below.
    }
    if (host !== req.headers.host) return permissionDenied(`an action from origin ${JSON.stringify(origin.slice(0, 64))} is refused: only the dashboard's own pages may act`);
  }
  return undefined;
}
