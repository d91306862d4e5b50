import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMemoryStore, openSqliteStore, openSqliteThreadStore, type Store, type WriteOp } from "../../src/store/index.js";
import { TSX } from "../helpers/process.js";
import { openEtcdStore } from "../../src/store/etcd-store.js";
import { ETCD_MAX_TXN_OPS, startEtcd, type EtcdCluster } from "../cluster/etcd.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "baton-store-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// One real etcd for the etcd variant, each store under a prefix of its own.
let etcd: EtcdCluster;
beforeAll(async () => {
  etcd = await startEtcd();
}, 90_000);
afterAll(() => etcd?.stop());

let opened = 0;
const freshPath = () => join(dir, `s${++opened}`, "journal.sqlite");
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined) => (b ? new TextDecoder().decode(b) : undefined);
const put = (key: string, value = key): WriteOp => ({ type: "put", key, value: enc(value) });
const keysOf = (entries: Array<[string, Uint8Array]>) => entries.map(([k]) => k);
// The order the contract promises: UTF-8 bytes, as SQLite's BINARY collation and etcd compare.
const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

async function fill(store: Store, keys: string[]): Promise<void> {
  expect(await store.write(keys.map((k) => put(k)))).toBe(true);
}

describe.each([
  ["memory", (): Store => createMemoryStore()],
  ["sqlite", (): Store => openSqliteStore({ path: freshPath() })],
  ["sqlite on its own thread", (): Promise<Store> => openSqliteThreadStore({ path: freshPath() })],
  ["etcd", (): Store => openEtcdStore({ endpoints: etcd.endpoints, prefix: `test/s${++opened}/`, maxTxnOps: ETCD_MAX_TXN_OPS })],
])("%s store", (_name, open) => {
  let store: Store;
  const withStore = (fn: () => Promise<void>) => async () => {
    store = await open();
    try {
      await fn();
    } finally {
      await store.close();
    }
  };

  it("puts, overwrites, gets and deletes", withStore(async () => {
    expect(await store.write([put("a", "1")])).toBe(true);
    expect(dec(await store.get("a"))).toBe("1");
    expect(await store.write([put("a", "2")])).toBe(true);
    expect(dec(await store.get("a"))).toBe("2");
    expect(await store.write([{ type: "delete", key: "a" }])).toBe(true);
    expect(await store.get("a")).toBeUndefined();
    expect(await store.write([{ type: "delete", key: "never-there" }])).toBe(true);
    expect(await store.write([])).toBe(true);
    expect(await store.get("missing")).toBeUndefined();
  }));

  it("applies ops on one key in batch order", withStore(async () => {
    await store.write([put("k", "1"), { type: "delete", key: "k" }, put("k", "2")]);
    expect(dec(await store.get("k"))).toBe("2");
    await store.write([put("k", "3"), { type: "delete", key: "k" }]);
    expect(await store.get("k")).toBeUndefined();
  }));

  it("writes nothing of a batch whose condition fails", withStore(async () => {
    await fill(store, ["task/1", "task/9"]);
    const batch: WriteOp[] = [put("task/2", "y"), put("task/1", "z"), { type: "delete", key: "task/9" }];
    expect(await store.write(batch, [{ key: "task/3", absent: true }, { key: "task/1", absent: true }])).toBe(false);
    expect(await store.get("task/2")).toBeUndefined();
    expect(dec(await store.get("task/1"))).toBe("task/1");
    expect(dec(await store.get("task/9"))).toBe("task/9");
    expect(keysOf(await store.scan(""))).toEqual(["task/1", "task/9"]);
  }));

  it("writes the whole batch when every key named absent is absent", withStore(async () => {
    await fill(store, ["task/1"]);
    expect(await store.write([put("task/2", "y"), { type: "delete", key: "task/1" }], [{ key: "task/2", absent: true }, { key: "task/3", absent: true }])).toBe(true);
    expect(dec(await store.get("task/2"))).toBe("y");
    expect(await store.get("task/1")).toBeUndefined();
    // Conditions are checked against the state before the batch, so a create is once only.
    expect(await store.write([put("task/2", "again")], [{ key: "task/2", absent: true }])).toBe(false);
    expect(dec(await store.get("task/2"))).toBe("y");
  }));

  it("scans a prefix in key order, without keys of longer or sibling prefixes", withStore(async () => {
    await fill(store, ["task/2", "task/10", "task/1", "task/1/x", "task/", "tasks/", "tasks/1", "task", "tas", "directive/1", "u"]);
    expect(keysOf(await store.scan("task/"))).toEqual(["task/", "task/1", "task/1/x", "task/10", "task/2"]);
    expect(keysOf(await store.scan("task/1"))).toEqual(["task/1", "task/1/x", "task/10"]);
    expect(keysOf(await store.scan("tasks/"))).toEqual(["tasks/", "tasks/1"]);
    expect(keysOf(await store.scan("task"))).toEqual(["task", "task/", "task/1", "task/1/x", "task/10", "task/2", "tasks/", "tasks/1"]);
    expect(keysOf(await store.scan("nothing/"))).toEqual([]);
    expect(keysOf(await store.scan(""))).toEqual(["directive/1", "tas", "task", "task/", "task/1", "task/1/x", "task/10", "task/2", "tasks/", "tasks/1", "u"]);
    const [[, value]] = (await store.scan("directive/")) as [[string, Uint8Array]];
    expect(dec(value)).toBe("directive/1");
  }));

  it("pages a scan with startAfter and limit", withStore(async () => {
    await fill(store, ["task/", "task/1", "task/1/x", "task/10", "task/2", "tasks/1", "a"]);
    expect(keysOf(await store.scan("task/", { startAfter: "task/1", limit: 2 }))).toEqual(["task/1/x", "task/10"]);
    // startAfter need not be a stored key, and one before the prefix changes nothing.
    expect(keysOf(await store.scan("task/", { startAfter: "task/1/y" }))).toEqual(["task/10", "task/2"]);
    expect(keysOf(await store.scan("task/", { startAfter: "a" }))).toEqual(["task/", "task/1", "task/1/x", "task/10", "task/2"]);
    expect(keysOf(await store.scan("task/", { startAfter: "task/2" }))).toEqual([]);
    expect(keysOf(await store.scan("task/", { startAfter: "z" }))).toEqual([]);
    expect(keysOf(await store.scan("task/", { limit: 0 }))).toEqual([]);
    expect(keysOf(await store.scan("", { startAfter: "task/2", limit: 1 }))).toEqual(["tasks/1"]);
    const paged: string[] = [];
    for (let after: string | undefined; ; ) {
      const page = await store.scan("task/", { limit: 2, ...(after === undefined ? {} : { startAfter: after }) });
      paged.push(...keysOf(page));
      if (page.length < 2) break;
      after = page.at(-1)![0];
    }
    expect(paged).toEqual(["task/", "task/1", "task/1/x", "task/10", "task/2"]);
  }));

  it("orders keys by their UTF-8 bytes, astral and NUL included", withStore(async () => {
    const keys = ["\uffff", "\u{1F600}", "\ue000", "a", "a\u0000", "a\u0000b", "\ud7ff", "é", "\u{10FFFF}", "\u{10000}"];
    await fill(store, keys);
    expect(keysOf(await store.scan(""))).toEqual([...keys].sort(byteOrder));
    expect(keysOf(await store.scan("a\u0000"))).toEqual(["a\u0000", "a\u0000b"]);
    expect(keysOf(await store.scan("", { startAfter: "\uffff" }))).toEqual(["\u{10000}", "\u{1F600}", "\u{10FFFF}"]);
  }));

  it("bounds prefixes that end at the edges of UTF-16", withStore(async () => {
    // Each prefix's last code point is where a naive "last code unit + 1" bound goes wrong.
    await fill(store, ["x\uffff1", "x\u{10000}", "\u{1F3FF}a", "\u{1F400}", "\ud7ffa", "\ue000", "\u{10FFFF}a", "\u{10FFFE}", "z"]);
    expect(keysOf(await store.scan("x\uffff", { limit: 5 }))).toEqual(["x\uffff1"]);
    expect(keysOf(await store.scan("\u{1F3FF}", { limit: 5 }))).toEqual(["\u{1F3FF}a"]);
    expect(keysOf(await store.scan("\ud7ff", { limit: 5 }))).toEqual(["\ud7ffa"]);
    expect(keysOf(await store.scan("\u{10FFFF}", { limit: 5 }))).toEqual(["\u{10FFFF}a"]);
  }));

  it("keeps binary values byte for byte", withStore(async () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    const backing = Uint8Array.from([9, 9, 9, 0, 255, 0, 128, 9, 9]);
    const view = backing.subarray(3, 7);
    await store.write([
      { type: "put", key: "all", value: all },
      { type: "put", key: "view", value: view },
      { type: "put", key: "empty", value: new Uint8Array(0) },
    ]);
    // The store keeps its own copy: neither the caller's buffer nor a value read back aliases it.
    backing.fill(1);
    (await store.get("all"))!.fill(7);
    expect(await store.get("all")).toEqual(all);
    expect(await store.get("view")).toEqual(Uint8Array.from([0, 255, 0, 128]));
    expect(await store.get("empty")).toEqual(new Uint8Array(0));
    const got = await store.get("all");
    expect(got?.constructor).toBe(Uint8Array);
    expect((await store.scan("", { limit: 1 }))[0]![1]).toEqual(all);
  }));

  it("rejects bad keys and options, writing nothing", withStore(async () => {
    const bad = ["", "k".repeat(1025), "é".repeat(513), "lone \ud800 surrogate", 42 as unknown as string];
    for (const key of bad) {
      await expect(store.write([put("good"), { type: "put", key, value: enc("x") }])).rejects.toThrow(Error);
      await expect(store.write([put("good")], [{ key, absent: true }])).rejects.toThrow(Error);
      await expect(store.write([{ type: "delete", key }])).rejects.toThrow(Error);
      await expect(store.get(key)).rejects.toThrow(Error);
    }
    expect(await store.get("good")).toBeUndefined();
    await expect(store.write([{ type: "put", key: "s", value: "text" as unknown as Uint8Array }])).rejects.toThrow(Error);
    await expect(store.scan("", { limit: -1 })).rejects.toThrow(Error);
    await expect(store.scan("", { limit: 1.5 })).rejects.toThrow(Error);
    await expect(store.scan("\udc00")).rejects.toThrow(Error);
    // The limit is in bytes: 1024 of them fit, however many characters that is.
    expect(await store.write([put("k".repeat(1024)), put("é".repeat(512))])).toBe(true);
    expect(await store.scan("")).toHaveLength(2);
  }));

  it("rejects every call once closed", async () => {
    const s = await open();
    await s.write([put("a")]);
    await s.close();
    await s.close();
    await expect(s.get("a")).rejects.toThrow(/closed/);
    await expect(s.write([put("b")])).rejects.toThrow(/closed/);
    await expect(s.scan("")).rejects.toThrow(/closed/);
  });
});

describe("sqlite store", () => {
  it("keeps what it wrote across close and reopen", async () => {
    const path = freshPath();
    const first = openSqliteStore({ path, synchronous: "NORMAL" });
    await first.write([put("task/1", "one"), put("task/2", "two")]);
    await first.close();
    const second = openSqliteStore({ path });
    expect((await second.scan("task/")).map(([k, v]) => [k, dec(v)])).toEqual([["task/1", "one"], ["task/2", "two"]]);
    await second.close();
  });

  it("makes its missing folder private", async () => {
    const path = join(dir, "private", "nested", "journal.sqlite");
    const s = openSqliteStore({ path });
    await s.close();
    expect(statSync(join(dir, "private", "nested")).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, "private")).mode & 0o777).toBe(0o700);
  });

  it("refuses a synchronous mode it does not know", () => {
    expect(() => openSqliteStore({ path: freshPath(), synchronous: "OFF" as "FULL" })).toThrow(Error);
  });

  describe.each(["FULL", "NORMAL"] as const)("killed with SIGKILL (synchronous %s)", (synchronous) => {
    it("loses no acknowledged batch and tears none", async () => {
      const path = freshPath();
      const child = spawn(process.execPath, ["--import", TSX, new URL("./writer-child.ts", import.meta.url).pathname, path, synchronous, "100000"], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stderr = "";
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      let acked = -1;
      let tail = "";
      await new Promise<void>((resolve, reject) => {
        child.stdout.on("data", (d: Buffer) => {
          const lines = (tail + d.toString()).split("\n");
          tail = lines.pop()!;
          for (const line of lines) acked = Number(/^acked (\d+)$/.exec(line)?.[1] ?? acked);
          // Enough acks to be past the start; the child goes on writing, so the kill lands mid-stream.
          if (acked >= 150) resolve();
        });
        child.once("exit", (code, signal) => reject(new Error(`writer exited early (${code ?? signal}) after ${acked} acks: ${stderr}`)));
      });
      child.kill("SIGKILL");
      await exited;
      expect(child.signalCode).toBe("SIGKILL");

      const s = openSqliteStore({ path });
      try {
        const tasks = keysOf(await s.scan("task/"));
        const directives = keysOf(await s.scan("directive/"));
        const last = keysOf(await s.scan("last/"));
        // Batches are numbered from 0 and written in order, so the survivors are 0..m for some m >= acked.
        expect(tasks.length).toBeGreaterThanOrEqual(acked + 1);
        expect(tasks).toEqual(Array.from({ length: tasks.length }, (_, n) => `task/${String(n).padStart(8, "0")}`));
        expect(directives).toEqual(tasks.map((k) => k.replace("task/", "directive/")));
        expect(last).toEqual([tasks.at(-1)!.replace("task/", "last/")]);
        expect(dec(await s.get(`directive/${String(acked).padStart(8, "0")}`))).toBe(`batch ${acked}`);
      } finally {
        await s.close();
      }
    });
  });
});

describe("etcd store over mutual TLS", () => {
  it("reads and writes with the configured CA, certificate and key; refuses without a client certificate", async () => {
    const { makePki } = await import("../helpers/pki.js");
    const pki = await makePki();
    const client = await pki.issue("operator", "baton-journal");
    const files = pki.writeFiles({ "ca.pem": pki.ca.certPem, "etcd.pem": pki.server.certPem, "etcd.key": pki.server.keyPem, "client.pem": client.certPem, "client.key": client.keyPem });
    const tlsEtcd = await startEtcd(1, { tls: { caFile: join(files, "ca.pem"), certFile: join(files, "etcd.pem"), keyFile: join(files, "etcd.key") } });
    const stores: Store[] = [];
    try {
      const o = { endpoints: tlsEtcd.endpoints, prefix: "tls/", maxTxnOps: ETCD_MAX_TXN_OPS, dialTimeoutMs: 3000 };
      const store = openEtcdStore({ ...o, caFile: join(files, "ca.pem"), certFile: join(files, "client.pem"), keyFile: join(files, "client.key") });
      stores.push(store);
      expect(await store.write([put("task/1", "over TLS")])).toBe(true);
      expect(dec(await store.get("task/1"))).toBe("over TLS");
      const anonymous = openEtcdStore({ ...o, caFile: join(files, "ca.pem") });
      stores.push(anonymous);
      await expect(anonymous.get("task/1")).rejects.toThrow();
    } finally {
      for (const s of stores) await s.close();
      await tlsEtcd.stop();
      pki.cleanup();
    }
  }, 120_000);
});

describe("etcd store", () => {
  const opts = () => ({ endpoints: etcd.endpoints, prefix: `fence/s${++opened}/`, maxTxnOps: ETCD_MAX_TXN_OPS });

  it("refuses a fenced write once the fence key is gone or re-created, writing nothing", async () => {
    const o = opts();
    const admin = openEtcdStore({ ...o, prefix: "" });
    const fenceKey = `${o.prefix}leader`;
    await admin.write([{ type: "put", key: fenceKey, value: enc("me") }]);
    const { Etcd3 } = await import("etcd3");
    const client = new Etcd3({ hosts: etcd.endpoints.map((e) => `http://${e}`) });
    const createRevision = String((await client.kv.range({ key: Buffer.from(fenceKey) })).kvs[0]!.create_revision);
    const fenced = openEtcdStore({ ...o, fence: { key: fenceKey, createRevision } });
    try {
      expect(await fenced.write([put("task/1")])).toBe(true);
      // A condition failing is still false, not a fence failure.
      expect(await fenced.write([put("task/2")], [{ key: "task/1", absent: true }])).toBe(false);
      // Re-created: the same key, another incarnation (another leader's term).
      await admin.write([{ type: "delete", key: fenceKey }]);
      await admin.write([{ type: "put", key: fenceKey, value: enc("someone else") }]);
      await expect(fenced.write([put("task/3")])).rejects.toThrow(/write refused.*no longer at create revision/);
      await admin.write([{ type: "delete", key: fenceKey }]);
      await expect(fenced.write([put("task/4")], [{ key: "task/1", absent: true }])).rejects.toThrow(/write refused/);
      expect(keysOf(await fenced.scan("task/"))).toEqual(["task/1"]);
    } finally {
      client.close();
      await fenced.close();
      await admin.close();
    }
  });

  it("refuses clearly a batch larger than one transaction may be, and takes one at the limit", async () => {
    const store = openEtcdStore({ ...opts(), maxTxnOps: 300 });
    try {
      const keys = (n: number) => Array.from({ length: n }, (_, i) => put(`task/${String(i).padStart(4, "0")}`));
      await expect(store.write(keys(301))).rejects.toThrow(/store\.etcd\.maxTxnOps \(300\).*--max-txn-ops/);
      // A conditional batch also carries the op that tells a resend from a conflict, and says so.
      await expect(store.write(keys(300), [{ key: "task/x", absent: true }])).rejects.toThrow(/batch of 300 ops \(and 1 more for its resend check\) and 1 compares/);
      expect(await store.scan("")).toEqual([]);
      expect(await store.write(keys(300))).toBe(true);
      // More than one page of a scan, read at one revision.
      expect(keysOf(await store.scan("task/"))).toEqual(keys(300).map((op) => op.key));
      expect(await store.scan("task/", { limit: 7, startAfter: "task/0100" })).toHaveLength(7);
    } finally {
      await store.close();
    }
  });

  it("a conditional batch whose answer was lost, and which etcd3 resent, reports that it applied, not that its condition failed", async () => {
    const { Etcd3 } = await import("etcd3");
    const { InterceptingCall, Metadata, status } = await import("@grpc/grpc-js");
    type StatusObject = import("@grpc/grpc-js").StatusObject;
    // The first Txn reaches etcd and is applied; its answer is replaced by UNAVAILABLE, as
    // when a connection drops after etcd committed. etcd3's default policy then resends it.
    let txns = 0;
    const loseFirstAnswer = (options: { method_definition: { path: string } }, next: (o: unknown) => InstanceType<typeof InterceptingCall>) => {
      const lose = options.method_definition.path.endsWith("/Txn") && ++txns === 1;
      return new InterceptingCall(next(options), {
        start(metadata, listener, start) {
          start(metadata, {
            // grpc-js drops a unary answer whose status is not OK: the status alone decides.
            onReceiveMessage(message: unknown, deliver: (m: unknown) => void) {
              deliver(message);
            },
            onReceiveStatus(s: StatusObject, deliver: (s: StatusObject) => void) {
              deliver(lose ? { code: status.UNAVAILABLE, details: "answer lost (test)", metadata: new Metadata() } : s);
            },
          });
        },
      });
    };
    const client = new Etcd3({ hosts: etcd.endpoints.map((e) => `http://${e}`), grpcOptions: { interceptors: [loseFirstAnswer] } as never });
    const o = opts();
    const store = openEtcdStore({ ...o, client });
    try {
      expect(await store.write([put("task/1")], [{ key: "task/1", absent: true }])).toBe(true);
      expect(txns).toBe(2);
      // A real conflict is still one.
      expect(await store.write([put("task/1")], [{ key: "task/1", absent: true }])).toBe(false);
      expect(keysOf(await store.scan(""))).toEqual(["task/1"]);
    } finally {
      await store.close();
      // close() took the store's nonce key with it: nothing of it is left beside the journal.
      expect((await client.kv.range({ key: Buffer.from(`${o.prefix.slice(0, -1)}.nonce/`), range_end: Buffer.from(`${o.prefix.slice(0, -1)}.nonce0`) })).kvs).toEqual([]);
      client.close();
    }
  });
});

describe("sqlite store on its own thread", () => {
  it("a thread that dies fails the calls it had, and the next call opens the journal on a new one", async () => {
    const { Worker } = await import("node:worker_threads");
    const path = freshPath();
    const threads: InstanceType<typeof Worker>[] = [];
    const s = await openSqliteThreadStore({ path }, { onThread: (w) => threads.push(w) });
    try {
      expect(await s.write([put("before", "1")])).toBe(true);
      expect(threads).toHaveLength(1);
      await threads[0]!.terminate();
      // The journal is there again, as it was, on a second thread.
      expect(dec(await s.get("before"))).toBe("1");
      expect(threads).toHaveLength(2);
      expect(await s.write([put("after", "2")])).toBe(true);
      expect(keysOf(await s.scan(""))).toEqual(["after", "before"]);
    } finally {
      await s.close();
    }
  });
});
