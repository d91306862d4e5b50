import { describe, expect, it } from "vitest";
import { ROOT, run } from "../helpers/process.js";

// The Python SDK (sdk/python) and its examples, tested with Debian's python3 and packages.
const PYTHON = "/usr/bin/python3";
const APT = "apt-get install -y python3-grpcio python3-protobuf python3-cryptography python3-pytest protobuf-compiler";
const probe = await run(PYTHON, ["-c", "import grpc, google.protobuf, cryptography, pytest"], { timeoutMs: 60_000 }).catch((err: Error) => ({ code: -1, stdout: "", stderr: err.message }));
const missing = probe.code === 0 ? undefined : `the Python SDK's tests need ${PYTHON} with grpcio, protobuf, cryptography and pytest (${probe.stderr.trim().split("\n").at(-1)}): ${APT}`;

async function pytest(file: string): Promise<void> {
  const out = await run(PYTHON, ["-m", "pytest", "-q", "-p", "no:cacheprovider", `sdk/python/tests/${file}`], {
    cwd: ROOT,
    // The coordinator the tests start runs on this node; no bytecode is written into the tree.
    env: { BATON_NODE: process.execPath, PYTHONDONTWRITEBYTECODE: "1" },
    timeoutMs: 900_000,
  });
  expect(out.code, `pytest ${file} failed:\n${out.stdout.slice(-6000)}\n${out.stderr.slice(-3000)}`).toBe(0);
}

describe("the Python SDK (pytest against a real coordinator)", () => {
  it("has its Debian packages (missing ones fail under CI=true)", (ctx) => {
    if (missing && process.env.CI !== "true") ctx.skip(missing);
    expect(missing).toBeUndefined();
  });

  it.for(["test_vectors.py", "test_agent.py", "test_examples.py"])("%s passes", { timeout: 900_000 }, async (file, ctx) => {
    if (missing) ctx.skip(missing);
    await pytest(file);
  });
});
