import { describe, expect, it } from "vitest";
import { buildConfig, ConfigError } from "../../src/config.js";
import { baton, CLI_MS } from "../cli/cli-helpers.js";

// services.resourceManager / services.performanceMonitor "registry": found in the service
// registry in etcd, so only with store.kind "etcd".

describe("services: \"registry\"", () => {
  it("is refused without the etcd store, naming the setting; taken with it", () => {
    for (const [services, name] of [[{ resourceManager: "registry" }, "services.resourceManager"], [{ performanceMonitor: "registry" }, "services.performanceMonitor"]] as const) {
      const bad = () => buildConfig({ services: { only: "coordinator", ...services } });
      expect(bad).toThrow(ConfigError);
      expect(bad).toThrow(new RegExp(`${name.replace(".", "\\.")} .*"registry".*store\\.kind "etcd"`));
      expect(buildConfig({ store: { kind: "etcd" }, services: { only: "coordinator", ...services } }).services).toMatchObject(services);
    }
    // An address is still an address.
    expect(() => buildConfig({ store: { kind: "etcd" }, services: { only: "coordinator", resourceManager: "registr" } })).toThrow(/services\.resourceManager must be host:port/);
  });

  it("baton serve --resource-manager registry without --store etcd exits 78 saying what is needed", { timeout: CLI_MS * 2 }, async () => {
    const bad = await baton(["serve", "--only", "coordinator", "--resource-manager", "registry"]);
    expect(bad.code, bad.stderr).toBe(78);
    expect(bad.stderr).toMatch(/services\.resourceManager \(--resource-manager\) is "registry"/);
    expect(bad.stderr).toMatch(/store\.kind "etcd" \(--store etcd:\/\/host:port\)/);
  });
});
