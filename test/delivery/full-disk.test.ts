import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, unlinkSync, writeSync, openSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Control, TaskState } from "../../gen/baton/v1/control_pb.js";
import { Code } from "../../src/errors.js";
import { createClient } from "../../src/rpc/index.js";
import { useFixture } from "../helpers/fixture.js";
import { startServer, waitFor, waitForAsync, type TestServer } from "../helpers/server.js";

// A full disk needs a small file system of its own: a tmpfs, which only root may mount.
const root = process.getuid?.() === 0;
const canMount = root && (() => {
  const dir = mkdtempSync(join(tmpdir(), "baton-mount-probe-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir], { stdio: "ignore" });
    execFileSync("umount", [dir], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
})();
if (!canMount) console.warn("full-disk tests skipped: they mount a 2 MiB tmpfs, which needs root and mount(8)");

const fx = useFixture();
const mounts: string[] = [];
afterEach(() => {
  for (const dir of mounts.splice(0)) {
    try {
      execFileSync("umount", ["-l", dir], { stdio: "ignore" });
    } catch {}
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A fresh 2 MiB tmpfs, unmounted after the test. */
function smallDisk(): string {
  const dir = mkdtempSync(join(tmpdir(), "baton-full-disk-"));
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", dir]);
  mounts.push(dir);
  return dir;
}

/** Fills the file system under dir to the last byte; returns a function that frees it. */
function fill(dir: string): () => void {
  const file = join(dir, "filler");
  const fd = openSync(file, "w");
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (let size = chunk.length; size >= 1; size = Math.floor(size / 2)) {
      for (;;) {
        try {
          writeSync(fd, chunk, 0, size);
        } catch {
          break;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return () => unlinkSync(file);
}

// Big enough to need fresh pages on a full disk, small enough that the WAL fits in 2 MiB twice over.
const bigResult = () => ({ blob: "r".repeat(100_000) });

async function server(dataDir: string): Promise<TestServer> {
  return startServer(fx.pki, { store: { kind: "sqlite", dataDir }, session: { disconnectGraceMs: 60_000 } });
}

describe.skipIf(!canMount)("acknowledged means durable, even on a full disk", () => {
  it("a completion that cannot be journaled is not acknowledged, changes nothing, and lands once the disk has room", async () => {
    const dir = smallDisk();
    fx.srv = await server(dir);
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    const agent = await fx.agent("worker", { capabilities: ["python"], reconnectInitialMs: 50, reconnectMaxMs: 500 });
    await agent.connect();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let runs = 0;
    void agent.run(async () => {
      runs++;
      await gate;
      return bigResult();
    });
    await control.submitTask({ task: { taskId: "precious", requiredCapabilities: ["python"] } });
    await waitFor(() => fx.srv.server.coordinator.getTask("precious").state === TaskState.RUNNING, 20_000, "the task to run");
    const free = fill(dir);
    release();
    // The write fails: the coordinator says so and takes no work until it can write again.
    await waitFor(() => fx.srv.logs.lines.some((l) => l.msg === "journal write failed: the coordinator takes no work and reloads the journal once it can write again"), 20_000, "the journal failure");
    await expect(control.getTask({ taskId: "precious" })).rejects.toMatchObject({ code: Code.UNAVAILABLE });
    await expect(control.submitTask({ task: { taskId: "later", requiredCapabilities: ["python"] } })).rejects.toMatchObject({ code: Code.UNAVAILABLE });
    // Nothing reported success: no event, no ack.
    expect(fx.srv.logs.lines.some((l) => l.message_type === "completion_ack")).toBe(false);
    free();
    // Once it can write, the coordinator reloads; the agent resumes and resends its completion.
    await waitForAsync(
      () => control.getTask({ taskId: "precious" }).then((r) => r.task?.state === TaskState.SUCCEEDED, () => false),
      60_000,
      "the task to succeed after the disk has room",
    );
    expect(runs).toBe(1);
    const task = (await control.getTask({ taskId: "precious" })).task!;
    expect(task.result).toEqual(bigResult());
    expect(task.attempts.at(-1)?.outcome).toBe("succeeded");
    // And it is durable: a restart on the same data still has it.
    await agent.close();
    await fx.srv.stop();
    fx.srv = await server(dir);
    const again = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    expect((await again.getTask({ taskId: "precious" })).task?.state).toBe(TaskState.SUCCEEDED);
  });

  it("a duplicate submit waits for the first one's write, and neither says OK when it failed", async () => {
    const dir = smallDisk();
    fx.srv = await server(dir);
    const control = createClient(Control, fx.channel(await fx.pki.credentials("operator", "ops")));
    const free = fill(dir);
    const task = { taskId: "twice", requiredCapabilities: ["python"], input: { blob: "i".repeat(100_000) } };
    const results = await Promise.allSettled([control.submitTask({ task }), control.submitTask({ task })]);
    for (const r of results) {
      expect(r.status).toBe("rejected");
      expect((r as PromiseRejectedResult).reason).toMatchObject({ code: Code.UNAVAILABLE });
    }
    free();
    await waitForAsync(() => control.listTasks({}).then(() => true, () => false), 60_000, "the coordinator to reload its journal");
    await expect(control.getTask({ taskId: "twice" })).rejects.toMatchObject({ code: Code.NOT_FOUND });
    // Submitted again once there is room, it is created.
    expect((await control.submitTask({ task })).created).toBe(true);
  });
});
