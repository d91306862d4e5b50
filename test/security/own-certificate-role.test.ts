// A Resource Manager or Performance Monitor started on its own refuses a coordinator
// certificate: with one it could forward Control reads to the leader naming any caller
// (baton-forwarded-identity), so a compromised RM would read everything as operator/root.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { once } from "node:events";
import { join } from "node:path";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { ResourceManager } from "../../gen/baton/v1/resource_manager_pb.js";
import { clientCredentials, createChannel, createClient } from "../../src/rpc/index.js";
import { makePki, type TestPki } from "../helpers/pki.js";
import { startBaton, type BatonProcess } from "../helpers/process.js";

let pki: TestPki;
let dir: string;

beforeAll(async () => {
  pki = await makePki();
  const rm = await pki.issue("resource_manager", "rm-1");
  dir = pki.writeFiles({ "ca.pem": pki.ca.certPem, "coordinator.pem": pki.server.certPem, "coordinator.key": pki.server.keyPem, "rm-1.pem": rm.certPem, "rm-1.key": rm.keyPem });
});
afterAll(() => pki.cleanup());

// How the process ended up: exited (with its stderr), or serving (it should not have).
async function outcome(proc: BatonProcess): Promise<{ code: number | null; stderr: string } | "serving"> {
  let stderr = "";
  proc.child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = proc.child.exitCode !== null ? Promise.resolve() : once(proc.child, "exit");
  const serving = proc.waitForLine((l) => l.msg === "baton serving", 120_000).then(() => "serving" as const, () => undefined);
  const first = await Promise.race([exited.then(() => "exited" as const), serving]);
  if (first === "serving") {
    await proc.stop("SIGKILL");
    return "serving";
  }
  return { code: proc.child.exitCode, stderr };
}

describe("the own certificate of a Resource Manager or Performance Monitor process", () => {
  for (const [only, role] of [["resource-manager", "resource_manager"], ["performance-monitor", "performance_monitor"]] as const) {
    it(`--only ${only} with the coordinator's certificate exits 78, saying to issue a ${role} certificate`, { timeout: 150_000 }, async () => {
      const result = await outcome(startBaton(["serve", "--only", only, "--listen", "127.0.0.1:0", "--certs-dir", dir]));
      expect(result).not.toBe("serving");
      const { code, stderr } = result as { code: number | null; stderr: string };
      expect(code, stderr).toBe(78);
      expect(stderr).toContain(`${join(dir, "coordinator.pem")} is spiffe://baton.local/coordinator/coordinator`);
      expect(stderr).toContain(`baton certs issue --role ${role} --name`);
      expect(stderr).toContain("tls.certFile");
      expect(stderr).toContain("tls.keyFile");
    });
  }

  it("--only resource-manager with a resource_manager certificate serves, and accepts the coordinator", { timeout: 150_000 }, async () => {
    const proc = startBaton(["serve", "--only", "resource-manager", "--listen", "127.0.0.1:0", "--certs-dir", dir], {
      env: { BATON_TLS_CERT: join(dir, "rm-1.pem"), BATON_TLS_KEY: join(dir, "rm-1.key") },
    });
    try {
      const line = await proc.waitForLine((l) => l.msg === "baton serving", 120_000);
      const port = Number(String(line.listen).split(":").pop());
      const channel = createChannel(`localhost:${port}`, clientCredentials({ ca: pki.ca.certPem, cert: pki.server.certPem, key: pki.server.keyPem }));
      try {
        const answer = await createClient(ResourceManager, channel).query({ requestId: "550e8400-e29b-41d4-a716-446655440000", timestamp: timestampNow() }, { deadline: 30_000 });
        expect(answer.resources).toEqual([]);
      } finally {
        channel.close();
      }
    } finally {
      await proc.stop("SIGKILL");
    }
  });
});
