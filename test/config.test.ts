import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { buildConfig, configFromEnv, configFromFile, ConfigError, defaultConfig } from "../src/config.js";

describe("configuration", () => {
  it("defaults serve on 127.0.0.1:50051 with certificates in ./certs", () => {
    const c = buildConfig();
    expect(c.listen).toBe("127.0.0.1:50051");
    expect(c.tls.caFile).toBe("certs/ca.pem");
    expect(c.tls.certFile).toBe("certs/coordinator.pem");
  });

  it("layers file, then environment, then flags", () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-config-"));
    const file = join(dir, "baton.json");
    writeFileSync(file, JSON.stringify({ listen: "127.0.0.1:7000", coordinatorId: "from-file", session: { heartbeatIntervalMs: 1000 } }));
    const c = buildConfig(configFromFile(file), configFromEnv({ BATON_LISTEN: "127.0.0.1:8000", BATON_CERTS_DIR: "/etc/baton" }), { coordinatorId: "from-flag" });
    expect(c.listen).toBe("127.0.0.1:8000");
    expect(c.coordinatorId).toBe("from-flag");
    expect(c.session.heartbeatIntervalMs).toBe(1000);
    expect(c.tls.caFile).toBe("/etc/baton/ca.pem");
  });

  it.each([
    [{ listen: "nope" }, /listen must be host:port/],
    [{ session: { heartbeatIntervalMs: 0 } }, /heartbeatIntervalMs must be a positive/],
    [{ session: { defaultMaxInFlight: 50, maxInFlightLimit: 10 } }, /exceeds session.maxInFlightLimit/],
    [{ bogus: 1 } as never, /unknown setting bogus/],
    [{ session: { heartbeatIntervalMs: "fast" } } as never, /must be a number/],
    [{ transport: { ...defaultConfig().transport, keepaliveTimeMs: 1000 } }, /keepaliveTimeMs must be at least 10000/],
  ])("refuses contradictory or malformed settings: %j", (layer, message) => {
    expect(() => buildConfig(layer)).toThrow(ConfigError);
    expect(() => buildConfig(layer)).toThrow(message);
  });

  it("takes resources from the configuration and names a malformed one", () => {
    expect(buildConfig({ resources: [{ agentId: "pool", resourceId: "license-1", kind: "license", capacity: 5 }] }).resources).toHaveLength(1);
    expect(() => buildConfig({ resources: [{ agentId: "pool", resourceId: "", kind: "x", capacity: 1 }] })).toThrow(/resources\[0\] must be/);
    expect(() => buildConfig({ resources: "nope" } as never)).toThrow(/resources must be a list/);
  });

  it("names a bad environment variable", () => {
    expect(() => configFromEnv({ BATON_HEARTBEAT_INTERVAL_MS: "soon" })).toThrow(/BATON_HEARTBEAT_INTERVAL_MS: expected a whole number/);
    expect(() => configFromEnv({ BATON_DEV_CERTS: "maybe" })).toThrow(/BATON_DEV_CERTS/);
  });

  it("names a config file that is not JSON", () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-config-"));
    const file = join(dir, "bad.json");
    writeFileSync(file, "{ nope");
    expect(() => configFromFile(file)).toThrow(/is not a JSON object/);
    expect(() => configFromFile(join(dir, "missing.json"))).toThrow(/cannot read config file/);
  });

  it("takes security settings from file and environment, and refuses bad ones by name", () => {
    const c = buildConfig(configFromEnv({ BATON_MESSAGE_SECURITY: "off", BATON_MESH: "true", BATON_MESH_TRUSTED_PEERS: "127.0.0.1, 10.0.0.0/8", BATON_KEY_ROTATION_MS: "60000" }));
    expect(c.security.messageSecurity).toBe("off");
    expect(c.mesh).toEqual({ enabled: true, trustedPeers: ["127.0.0.1", "10.0.0.0/8"] });
    expect(c.security.keyRotationMs).toBe(60000);
    expect(buildConfig().tls.revokedFile).toBe("certs/revoked.json");
    expect(buildConfig().security.messageSecurity).toBe("required");
    expect(() => buildConfig({ security: { messageSecurity: "maybe" as never } })).toThrow(/security.messageSecurity must be "required" or "off"/);
    expect(() => buildConfig({ security: { keyRotationMs: 0 } })).toThrow(/security.keyRotationMs must be a positive whole number/);
    expect(() => buildConfig({ security: { replayWindowMs: -1 } })).toThrow(/security.replayWindowMs/);
    expect(() => buildConfig({ mesh: { trustedPeers: ["not-an-ip"] } })).toThrow(/mesh.trustedPeers: "not-an-ip" is not an IP address or CIDR range/);
  });
});
