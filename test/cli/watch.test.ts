import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { useFixture } from "../helpers/fixture.js";
import { ROOT, TSX, run } from "../helpers/process.js";
import { create } from "@bufbuild/protobuf";
import { TaskSpecSchema } from "../../gen/baton/v1/control_pb.js";
import { startServer, waitForAsync } from "../helpers/server.js";
import { cleanEnv, operatorFiles } from "./cli-helpers.js";

const fx = useFixture();

/** An agent that reports 50% on each directive, then holds it until the test ends. */
async function halfwayAgent(id: string) {
  const agent = await fx.agent(id, { capabilities: ["python"] });
  await agent.connect();
  let release: () => void = () => {};
  const released = new Promise<void>((r) => (release = r));
  fx.defer(() => release());
  void agent.run(async (_d, ctx) => {
    ctx.progress(50);
    await released;
    return {};
  });
}

// tsx start-up and a first frame take seconds on a loaded machine; a passing test waits for its frame, never this long.
const FRAME_MS = 90_000;

describe("baton watch", () => {
  it("draws agents and a running task's progress bar in place, in a terminal (tmux)", async () => {
    fx.srv = await startServer(fx.pki);
    const op = await operatorFiles(fx.pki);
    await halfwayAgent("a1");
    await fx.srv.server.coordinator.submitTask(create(TaskSpecSchema, { taskId: "w1", requiredCapabilities: ["python"] }), "test");
    const socket = `baton-watch-${process.pid}`;
    const tmux = (...args: string[]) => run("tmux", ["-L", socket, ...args], { timeoutMs: 30_000 });
    fx.defer(() => tmux("kill-server"));
    const cmd = [process.execPath, "--import", TSX, `${ROOT}src/main.ts`, "watch", ...op.flags(fx.srv.address)];
    const started = await tmux("new-session", "-d", "-s", "watch", "-x", "120", "-y", "40", "env", "-u", "BATON_CONTEXT", `XDG_CONFIG_HOME=${op.dir}`, ...cmd);
    expect(started.code, started.stderr).toBe(0);
    let screen = "";
    await waitForAsync(
      async () => {
        screen = (await tmux("capture-pane", "-p", "-t", "watch")).stdout;
        return /w1\s+running\s+a1\s+\[█{10}░{10}\]\s+50%/.test(screen);
      },
      FRAME_MS,
      "a frame with task w1 running on a1 at 50%",
    );
    expect(screen).toContain("baton watch: " + fx.srv.address);
    expect(screen).toMatch(/AGENTS\s+a1\s+online/);
    // Redrawn in place: the header is on the screen once, not once per frame.
    expect(screen.match(/baton watch:/g)).toHaveLength(1);
  });

  it("prints one line per event when its output is not a terminal, with the progress bar", async () => {
    fx.srv = await startServer(fx.pki);
    const op = await operatorFiles(fx.pki);
    await halfwayAgent("a1");
    const child = spawn(process.execPath, ["--import", TSX, `${ROOT}src/main.ts`, "watch", ...op.flags(fx.srv.address)], { env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] });
    fx.defer(() => child.kill("SIGKILL"));
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    await waitForAsync(async () => out.includes("TASKS"), FRAME_MS, "the first frame (snapshot loaded)");
    await fx.srv.server.coordinator.submitTask(create(TaskSpecSchema, { taskId: "w2", requiredCapabilities: ["python"] }), "test");
    await waitForAsync(async () => /task\.w2\.progress \[█{10}░{10}\]\s+50%/.test(out), FRAME_MS, "a progress line for w2");
    expect(out).toMatch(/task\.w2\.(pending|assigned)/);
    child.kill("SIGINT");
  });
});

