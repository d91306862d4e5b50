import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { credentials as grpcCredentials } from "@grpc/grpc-js";
import { Control } from "../../gen/baton/v1/control_pb.js";
import { ConnectRequestSchema, Coordinator as CoordinatorService } from "../../gen/baton/v1/session_pb.js";
import { buildConfig, ConfigError } from "../../src/config.js";
import { Code } from "../../src/errors.js";
import { createChannel, createClient } from "../../src/rpc/index.js";
import { parseXfcc, peerHost, uriFromXfcc } from "../../src/security/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer } from "../helpers/server.js";

const fx = useFixture();

const XFCC = "x-forwarded-client-cert";
const sidecar = (uri: string) => `By=spiffe://baton.local/coordinator/coordinator;Hash=4f2a9c;Subject="CN=x,O=baton";URI=${uri}`;

/** A Control client over plaintext, as a sidecar would forward it. */
function plainControl() {
  const channel = createChannel(`127.0.0.1:${fx.srv.port}`, grpcCredentials.createInsecure());
  fx.defer(() => channel.close());
  return createClient(Control, channel);
}

describe("x-forwarded-client-cert parsing", () => {
  it("reads Envoy's format: elements by comma, pairs by semicolon, quoted values with escapes", () => {
    const parsed = parseXfcc('By=spiffe://a/x/y;Hash=ab;Subject="CN=a, O=\\"b\\";x";URI=spiffe://baton.local/operator/ops,By=spiffe://b;URI=spiffe://c/operator/o');
    expect(parsed).toMatchObject({ ok: true });
    if (!parsed.ok) return;
    expect(parsed.elements.length).toBe(2);
    expect(parsed.elements[0]).toContainEqual(["subject", 'CN=a, O="b";x']);
    expect(parsed.elements[0]).toContainEqual(["uri", "spiffe://baton.local/operator/ops"]);
  });

  it.each([
    ["two certificates (APPEND_FORWARD)", "URI=spiffe://baton.local/operator/a,URI=spiffe://baton.local/operator/b", /names 2 certificates/],
    ["two URIs in one certificate", "URI=spiffe://baton.local/operator/a;URI=spiffe://baton.local/operator/b", /2 URI elements/],
    ["no URI", "By=spiffe://baton.local/x/y;Hash=ab", /0 URI elements/],
    ["an unterminated quote", 'Subject="CN=a;URI=spiffe://baton.local/operator/a', /unterminated/],
    ["garbage", "no equals sign", /is not Key=value/],
  ])("refuses %s", (_name, header, reason) => {
    const found = uriFromXfcc(header);
    expect(found.ok).toBe(false);
    if (!found.ok) expect(found.reason).toMatch(reason);
  });

  it("unwraps grpc-js peer strings to hosts", () => {
    expect(peerHost("127.0.0.1:5000")).toBe("127.0.0.1");
    expect(peerHost("::ffff:127.0.0.1:5000")).toBe("127.0.0.1");
    expect(peerHost("[::1]:5000")).toBe("::1");
    expect(peerHost("::1:5000")).toBe("::1");
  });
});

describe("mesh mode: plaintext behind a sidecar that terminates mTLS", () => {
  it("is off by default, and refuses to turn on without trusted peers or with a bad one", () => {
    expect(buildConfig().mesh.enabled).toBe(false);
    expect(() => buildConfig({ mesh: { enabled: true } })).toThrow(ConfigError);
    expect(() => buildConfig({ mesh: { enabled: true, trustedPeers: ["10.0.0.0/33"] } })).toThrow(/10.0.0.0\/33.*not an IP address or CIDR range/);
    expect(() => buildConfig({ mesh: { enabled: true, trustedPeers: ["localhost"] } })).toThrow(ConfigError);
    expect(buildConfig({ mesh: { enabled: true, trustedPeers: ["127.0.0.1", "10.0.0.0/8", "::1"] } }).mesh.trustedPeers).toHaveLength(3);
  });

  it("takes the identity from a trusted sidecar's header and applies the policy to it", async () => {
    fx.srv = await startServer(fx.pki, { mesh: { enabled: true, trustedPeers: ["127.0.0.1", "::1"] } }, undefined, true);
    const control = plainControl();
    await expect(control.listAgents({}, { headers: { [XFCC]: sidecar("spiffe://baton.local/operator/ops") } })).resolves.toBeTruthy();
    await expect(control.submitTask({ task: { taskId: "t" } }, { headers: { [XFCC]: sidecar("spiffe://baton.local/managed_agent/a1") } })).rejects.toMatchObject({ code: Code.PERMISSION_DENIED, details: expect.stringMatching(/managed_agent\/a1 \(role managed_agent\) lacks the capability tasks.submit/) });
  });

  it.each([
    ["no header", undefined, /sent no x-forwarded-client-cert/],
    ["another trust domain", sidecar("spiffe://evil.example/operator/ops"), /not in trust domain baton.local/],
    ["a non-baton URI", sidecar("https://baton.local/operator/ops"), /not a SPIFFE id/],
    ["two certificates", `${sidecar("spiffe://baton.local/operator/a")},${sidecar("spiffe://baton.local/operator/b")}`, /names 2 certificates/],
  ])("refuses %s with UNAUTHENTICATED", async (_name, header, reason) => {
    fx.srv = await startServer(fx.pki, { mesh: { enabled: true, trustedPeers: ["127.0.0.1", "::1"] } }, undefined, true);
    await expect(plainControl().listAgents({}, header ? { headers: { [XFCC]: header } } : {})).rejects.toMatchObject({ code: Code.UNAUTHENTICATED, details: expect.stringMatching(reason) });
  });

  it("ignores a forged header from a peer it was not told to trust (UNAUTHENTICATED), and keeps serving the trusted", async () => {
    fx.srv = await startServer(fx.pki, { mesh: { enabled: true, trustedPeers: ["10.1.2.3"] } }, undefined, true);
    await expect(plainControl().listAgents({}, { headers: { [XFCC]: sidecar("spiffe://baton.local/operator/ops") } })).rejects.toMatchObject({
      code: Code.UNAUTHENTICATED,
      details: expect.stringMatching(/peer 127.0.0.1 is not a trusted sidecar, so its x-forwarded-client-cert header is ignored/),
    });
    await expect(plainControl().getTask({ taskId: "x" }, { headers: { [XFCC]: sidecar("spiffe://baton.local/operator/ops") } })).rejects.toMatchObject({ code: Code.UNAUTHENTICATED });
  });

  it("opens an agent session for the identity the sidecar names, and refuses another agent's id", async () => {
    fx.srv = await startServer(fx.pki, { mesh: { enabled: true, trustedPeers: ["127.0.0.1", "::1"] } }, undefined, true);
    const channel = createChannel(`127.0.0.1:${fx.srv.port}`, grpcCredentials.createInsecure());
    fx.defer(() => channel.close());
    const client = createClient(CoordinatorService, channel);
    const open = (agentId: string) => {
      const frames = client.connect((async function* () {
        yield create(ConnectRequestSchema, { kind: { case: "hello", value: { agentId } } });
        await new Promise((r) => setTimeout(r, 1000));
      })(), { headers: { [XFCC]: sidecar("spiffe://baton.local/managed_agent/m1") } });
      return frames[Symbol.asyncIterator]().next();
    };
    const first = await open("m1");
    expect(first.value?.kind.case).toBe("welcome");
    await expect(open("m2")).rejects.toMatchObject({ code: Code.PERMISSION_DENIED, details: expect.stringMatching(/may not connect as agent "m2"/) });
  });
});

describe("outside mesh mode the header is ignored", () => {
  it("an agent certificate with a forged operator header is still an agent", async () => {
    fx.srv = await startServer(fx.pki);
    const agentControl = createClient(Control, createChannel(fx.srv.address, await fx.pki.credentials("managed_agent", "a1")));
    await expect(agentControl.submitTask({ task: { taskId: "t" } }, { headers: { [XFCC]: sidecar("spiffe://baton.local/operator/ops") } })).rejects.toMatchObject({ code: Code.PERMISSION_DENIED, details: expect.stringMatching(/managed_agent\/a1/) });
  });
});
