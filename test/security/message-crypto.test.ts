import { inspect } from "node:util";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { KeyRotationSchema, SessionKeySchema, type KeyRotation, type SealedPayload, type SignedEnvelope } from "../../gen/baton/v1/security_pb.js";
import { BatonError, Code } from "../../src/errors.js";
import {
  createKeyring,
  createReplayGuard,
  keyringFromRotation,
  open,
  seal,
  signEnvelope,
  verifyEnvelope,
  type SealContext,
} from "../../src/security/message/index.js";

const HOUR = 60 * 60 * 1000;
const MINUTE = 60 * 1000;

/** A clock the test moves by hand. */
function fakeClock(start = Date.UTC(2025, 0, 1)) {
  const clock = { t: start, now: () => clock.t, advance: (ms: number) => void (clock.t += ms) };
  return clock;
}

/** The BatonError fn throws (failing the test if it throws anything else or nothing). */
function thrown(fn: () => unknown): BatonError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BatonError);
    return err as BatonError;
  }
  throw new Error("expected a BatonError, nothing was thrown");
}

function expectCode(fn: () => unknown, code: Code): BatonError {
  const err = thrown(fn);
  expect(Code[err.code], err.message).toBe(Code[code]);
  return err;
}

const bytes = (s: string) => new TextEncoder().encode(s);
const flipBit = (b: Uint8Array, bit: number) => {
  const copy = Uint8Array.from(b);
  copy[bit >> 3]! ^= 1 << (bit & 7);
  return copy;
};

describe("signed envelopes", () => {
  it("round-trips the exact payload bytes", () => {
    const keyring = createKeyring();
    const payload = bytes("directive 42");
    const envelope = signEnvelope(keyring, payload);
    expect(envelope.keyId).toBe(keyring.current().keyId);
    expect(envelope.signature).toHaveLength(32);
    expect(Buffer.from(verifyEnvelope(keyring, envelope))).toEqual(Buffer.from(payload));
    expect(verifyEnvelope(keyring, signEnvelope(keyring, new Uint8Array()))).toHaveLength(0);
  });

  const other = createKeyring();
  it.each<[string, (e: SignedEnvelope) => SignedEnvelope]>([
    ["a tampered payload", (e) => ({ ...e, payload: flipBit(e.payload, 3) })],
    ["a longer payload", (e) => ({ ...e, payload: Buffer.concat([e.payload, Buffer.from([0])]) })],
    ["a tampered signature", (e) => ({ ...e, signature: flipBit(e.signature, 255) })],
    ["a short signature", (e) => ({ ...e, signature: e.signature.slice(0, 16) })],
    ["an empty signature", (e) => ({ ...e, signature: new Uint8Array() })],
    ["a long signature", (e) => ({ ...e, signature: Buffer.concat([e.signature, Buffer.from([0])]) })],
    ["an unknown key id", (e) => ({ ...e, keyId: "0123456789abcdef" })],
    ["an empty key id", (e) => ({ ...e, keyId: "" })],
    ["another keyring's key", (e) => ({ ...e, keyId: other.current().keyId })],
  ])("refuses %s with UNAUTHENTICATED", (_, tamper) => {
    const keyring = createKeyring();
    const envelope = signEnvelope(keyring, bytes("report"));
    expectCode(() => verifyEnvelope(keyring, tamper(envelope)), Code.UNAUTHENTICATED);
  });

  it("refuses any single-bit flip in the payload or the signature (property)", () => {
    const keyring = createKeyring();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), fc.nat(), (payload, inPayload, n) => {
        const envelope = signEnvelope(keyring, payload);
        const target = inPayload && payload.length > 0 ? "payload" : "signature";
        const tampered = { ...envelope, [target]: flipBit(envelope[target], n % (envelope[target].length * 8)) };
        expect(() => verifyEnvelope(keyring, tampered)).toThrow(expect.objectContaining({ code: Code.UNAUTHENTICATED }));
      }),
    );
  });
});

describe("keyring", () => {
  it("rotates after 24 h on the clock, and tells its listeners", () => {
    const clock = fakeClock();
    const keyring = createKeyring({ now: clock.now });
    const rotations: KeyRotation[] = [];
    keyring.onRotate((r) => rotations.push(r));
    const first = keyring.current();

    clock.advance(24 * HOUR - 1);
    expect(keyring.current().keyId).toBe(first.keyId);
    expect(rotations).toHaveLength(0);

    clock.advance(1);
    const second = keyring.current();
    expect(second.keyId).not.toBe(first.keyId);
    expect(second.keyId).toMatch(/^[0-9a-f]{16}$/);
    expect(rotations).toHaveLength(1);
    expect(rotations[0]!.keys.map((k) => k.keyId)).toEqual([second.keyId, first.keyId]);
    expect(keyring.current().keyId).toBe(second.keyId);
    expect(rotations).toHaveLength(1);
  });

  it("rotates once when rotate() is called with a rotation already due", () => {
    const clock = fakeClock();
    const keyring = createKeyring({ now: clock.now });
    let rotations = 0;
    keyring.onRotate(() => rotations++);
    const first = keyring.current().keyId;
    clock.advance(25 * HOUR);
    const next = keyring.rotate();
    expect(rotations).toBe(1);
    expect(keyring.toJSON().keyIds).toEqual([next.keyId, first]);
  });

  it("accepts the previous key within its grace, and refuses it after", () => {
    const clock = fakeClock();
    const keyring = createKeyring({ now: clock.now, graceMs: HOUR });
    const old = signEnvelope(keyring, bytes("before"));
    keyring.rotate();

    clock.advance(HOUR);
    expect(Buffer.from(verifyEnvelope(keyring, old)).toString()).toBe("before");

    clock.advance(1);
    expect(keyring.find(old.keyId)).toBeUndefined();
    expect(expectCode(() => verifyEnvelope(keyring, old), Code.UNAUTHENTICATED).message).toMatch(/retired/);
    expect(keyring.toRotation().retiredKeyIds).toEqual([old.keyId]);
  });

  it("tells an unknown key from a retired one", () => {
    const clock = fakeClock();
    const keyring = createKeyring({ now: clock.now, graceMs: 0 });
    const old = keyring.current().keyId;
    keyring.rotate();
    clock.advance(1);
    expect(expectCode(() => keyring.require(old), Code.UNAUTHENTICATED).message).toMatch(/retired/);
    expect(expectCode(() => keyring.require("feedfacefeedface"), Code.UNAUTHENTICATED).message).toMatch(/unknown/);
  });

  it("hands its keys to an agent keyring, which verifies the coordinator's signatures and is verified by it", () => {
    const clock = fakeClock();
    const coordinator = createKeyring({ now: clock.now });
    const pushed: KeyRotation[] = [];
    coordinator.onRotate((r) => pushed.push(r));
    const agent = keyringFromRotation(coordinator.toRotation(), { now: clock.now });

    const roundTrip = () => {
      expect(Buffer.from(verifyEnvelope(agent, signEnvelope(coordinator, bytes("directive")))).toString()).toBe("directive");
      expect(Buffer.from(verifyEnvelope(coordinator, signEnvelope(agent, bytes("report")))).toString()).toBe("report");
      const context = { messageId: "m1", sender: "coordinator", messageType: "CoordinationDirective" };
      expect(Buffer.from(open(agent, seal(coordinator, bytes("secret"), context), context)).toString()).toBe("secret");
      expect(Buffer.from(open(coordinator, seal(agent, bytes("secret"), context), context)).toString()).toBe("secret");
    };
    roundTrip();

    const unsent = signEnvelope(agent, bytes("sent just before the rotation"));
    clock.advance(24 * HOUR);
    coordinator.current();
    expect(pushed).toHaveLength(1);
    agent.apply(pushed[0]!);
    expect(agent.current().keyId).toBe(coordinator.current().keyId);
    roundTrip();
    // The agent's message under the old key still verifies within the grace.
    expect(verifyEnvelope(coordinator, unsent)).toHaveLength(29);

    clock.advance(HOUR + 1);
    expectCode(() => verifyEnvelope(coordinator, unsent), Code.UNAUTHENTICATED);
    expectCode(() => verifyEnvelope(agent, unsent), Code.UNAUTHENTICATED);
    expect(agent.toJSON().retiredKeyIds).toEqual([unsent.keyId]);
  });

  it("lets only the leader rotate, and only a follower apply", () => {
    const coordinator = createKeyring();
    const agent = keyringFromRotation(coordinator.toRotation());
    expectCode(() => agent.rotate(), Code.FAILED_PRECONDITION);
    expectCode(() => coordinator.apply(coordinator.toRotation()), Code.FAILED_PRECONDITION);
  });

  const key = (keyId: string, secretBytes = 32) => create(SessionKeySchema, { keyId, secret: new Uint8Array(secretBytes) });
  it.each<[string, KeyRotation]>([
    ["no keys", create(KeyRotationSchema, {})],
    ["a 16-byte secret", create(KeyRotationSchema, { keys: [key("a", 16)] })],
    ["an empty key id", create(KeyRotationSchema, { keys: [key("")] })],
    ["a duplicate key id", create(KeyRotationSchema, { keys: [key("a"), key("a")] })],
    ["a key both valid and retired", create(KeyRotationSchema, { keys: [key("a")], retiredKeyIds: ["a"] })],
  ])("refuses a key rotation with %s as INVALID_ARGUMENT", (_, rotation) => {
    expectCode(() => keyringFromRotation(rotation), Code.INVALID_ARGUMENT);
  });

  it("on an agent, refuses a key after its notAfter", () => {
    const clock = fakeClock();
    const rotation = create(KeyRotationSchema, {
      keys: [create(SessionKeySchema, { keyId: "k", secret: new Uint8Array(32).fill(7), notAfter: timestampFromMs(clock.t + MINUTE) })],
    });
    const agent = keyringFromRotation(rotation, { now: clock.now });
    expect(agent.find("k")).toBeDefined();
    clock.advance(MINUTE + 1);
    expect(agent.find("k")).toBeUndefined();
    expectCode(() => agent.current(), Code.UNAVAILABLE);
  });

  it("rotates a key before it has sealed more than maxUsesPerKey messages", () => {
    const keyring = createKeyring({ maxUsesPerKey: 3 });
    let rotations = 0;
    keyring.onRotate(() => rotations++);
    const context = { messageId: "m", sender: "coordinator", messageType: "t" };
    const sealed = Array.from({ length: 7 }, () => seal(keyring, bytes("x"), context));
    const ids = sealed.map((s) => s.keyId);
    expect(new Set(ids.slice(0, 3)).size).toBe(1);
    expect(new Set(ids.slice(3, 6)).size).toBe(1);
    expect(ids[3]).not.toBe(ids[0]);
    expect(ids[6]).not.toBe(ids[3]);
    expect(rotations).toBe(2);
    for (const s of sealed) expect(Buffer.from(open(keyring, s, context)).toString()).toBe("x");
    // Signing spends no nonces.
    for (let i = 0; i < 10; i++) signEnvelope(keyring, bytes("x"));
    expect(keyring.current().keyId).toBe(ids[6]);
  });

  it("on an agent, refuses to seal past maxUsesPerKey until the next rotation", () => {
    const agent = keyringFromRotation(createKeyring().toRotation(), { maxUsesPerKey: 2 });
    const context = { messageId: "m", sender: "agent", messageType: "t" };
    seal(agent, bytes("1"), context);
    seal(agent, bytes("2"), context);
    expectCode(() => seal(agent, bytes("3"), context), Code.RESOURCE_EXHAUSTED);
  });

  it("passes a listener's exception to onListenerError, rotating anyway", () => {
    const errors: unknown[] = [];
    const keyring = createKeyring({ onListenerError: (err) => errors.push(err) });
    let told = 0;
    keyring.onRotate(() => {
      throw new Error("listener bug");
    });
    const off = keyring.onRotate(() => told++);
    const before = keyring.current().keyId;
    expect(keyring.rotate().keyId).not.toBe(before);
    expect(told).toBe(1);
    expect(errors).toHaveLength(1);
    off();
    keyring.rotate();
    expect(told).toBe(1);
  });

  it("never prints a secret", () => {
    const keyring = createKeyring();
    const rotated = keyring.current();
    keyring.rotate();
    const current = keyring.current();
    for (const key of [rotated, current]) {
      const secret = key.secret.export();
      const forms = [secret.toString("hex"), secret.toString("base64"), secret.toString("base64url"), [...secret].join(",")];
      const printed = [JSON.stringify(key), JSON.stringify({ key }), inspect(key, { depth: 5 }), JSON.stringify(keyring), inspect(keyring, { depth: 5 })];
      for (const text of printed) for (const form of forms) expect(text).not.toContain(form);
      expect(JSON.parse(JSON.stringify(key))).toEqual({ keyId: key.keyId });
    }
    expect(JSON.parse(JSON.stringify(keyring))).toEqual({ currentKeyId: current.keyId, keyIds: [current.keyId, rotated.keyId], retiredKeyIds: [] });
  });

  it.each([{ rotationMs: 0 }, { graceMs: -1 }, { maxUsesPerKey: 0 }, { maxUsesPerKey: 2 ** 32 }, { maxUsesPerKey: 1.5 }])("refuses options %j", (options) => {
    expectCode(() => createKeyring(options), Code.INVALID_ARGUMENT);
  });
});

describe("sealed payloads", () => {
  const context: SealContext = { messageId: "0b6f3c1e-1d7a-4c55-9a0e-6f1c2d3e4f50", sender: "spiffe://baton.local/coordinator/main", messageType: "CoordinationDirective" };

  it("round-trips, with a fresh 12-byte nonce and a 16-byte tag each time", () => {
    const keyring = createKeyring();
    const a = seal(keyring, bytes("the parameters"), context);
    const b = seal(keyring, bytes("the parameters"), context);
    expect(a.nonce).toHaveLength(12);
    expect(a.tag).toHaveLength(16);
    expect(Buffer.from(a.nonce)).not.toEqual(Buffer.from(b.nonce));
    expect(Buffer.from(a.ciphertext)).not.toEqual(Buffer.from(b.ciphertext));
    expect(Buffer.from(open(keyring, a, context)).toString()).toBe("the parameters");
    expect(open(keyring, seal(keyring, new Uint8Array(), context), context)).toHaveLength(0);
  });

  const keyring = createKeyring();
  const secondKey = (() => {
    const k = createKeyring();
    const older = k.current().keyId;
    k.rotate();
    return { keyring: k, older };
  })();
  it.each<[string, (s: SealedPayload) => SealedPayload, SealContext?]>([
    ["a tampered ciphertext", (s) => ({ ...s, ciphertext: flipBit(s.ciphertext, 0) })],
    ["a truncated ciphertext", (s) => ({ ...s, ciphertext: s.ciphertext.slice(0, -1) })],
    ["a tampered tag", (s) => ({ ...s, tag: flipBit(s.tag, 127) })],
    ["a tampered nonce", (s) => ({ ...s, nonce: flipBit(s.nonce, 5) })],
    ["the real tag cut to 12 bytes", (s) => ({ ...s, tag: s.tag.slice(0, 12) })],
    ["the real tag cut to 8 bytes", (s) => ({ ...s, tag: s.tag.slice(0, 8) })],
    ["the real tag cut to 4 bytes", (s) => ({ ...s, tag: s.tag.slice(0, 4) })],
    ["an empty tag", (s) => ({ ...s, tag: new Uint8Array() })],
    ["a 17-byte tag", (s) => ({ ...s, tag: Buffer.concat([s.tag, Buffer.from([0])]) })],
    ["an unknown key id", (s) => ({ ...s, keyId: "0123456789abcdef" })],
    ["another message id", (s) => s, { ...context, messageId: "another" }],
    ["another sender", (s) => s, { ...context, sender: "spiffe://baton.local/managed_agent/mallory" }],
    ["another message type", (s) => s, { ...context, messageType: "AgentStatusRequest" }],
  ])("refuses %s with UNAUTHENTICATED", (_, tamper, openWith = context) => {
    const sealed = seal(keyring, bytes("the parameters"), context);
    expectCode(() => open(keyring, tamper(sealed), openWith), Code.UNAUTHENTICATED);
  });

  it("binds the key id: relabelled to another accepted key, it does not open", () => {
    const sealed = seal(secondKey.keyring, bytes("x"), context);
    expectCode(() => open(secondKey.keyring, { ...sealed, keyId: secondKey.older }, context), Code.UNAUTHENTICATED);
  });

  it("keeps the bound fields apart: shifting characters between them does not open", () => {
    const sealed = seal(keyring, bytes("x"), { messageId: "ab", sender: "c", messageType: "d" });
    expectCode(() => open(keyring, sealed, { messageId: "a", sender: "bc", messageType: "d" }), Code.UNAUTHENTICATED);
    expectCode(() => open(keyring, sealed, { messageId: "ab", sender: "", messageType: "cd" }), Code.INVALID_ARGUMENT);
  });

  it.each([0, 8, 11, 13, 16])("refuses a %i-byte nonce with INVALID_ARGUMENT", (n) => {
    const sealed = seal(keyring, bytes("x"), context);
    expectCode(() => open(keyring, { ...sealed, nonce: new Uint8Array(n) }, context), Code.INVALID_ARGUMENT);
  });

  it.each<[string, SealContext]>([
    ["an empty message id", { ...context, messageId: "" }],
    ["a lone surrogate", { ...context, sender: "agent\uD800" }],
  ])("refuses a context with %s with INVALID_ARGUMENT", (_, bad) => {
    expectCode(() => seal(keyring, bytes("x"), bad), Code.INVALID_ARGUMENT);
  });

  it("refuses a key retired after its grace", () => {
    const clock = fakeClock();
    const k = createKeyring({ now: clock.now, graceMs: 10 * MINUTE });
    const sealed = seal(k, bytes("x"), context);
    k.rotate();
    clock.advance(10 * MINUTE);
    expect(open(k, sealed, context)).toHaveLength(1);
    clock.advance(1);
    expect(expectCode(() => open(k, sealed, context), Code.UNAUTHENTICATED).message).toMatch(/retired/);
  });

  it("refuses any single-bit flip in nonce, ciphertext or tag (property)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 200 }), fc.constantFrom("nonce", "ciphertext", "tag"), fc.nat(), (plaintext, field: "nonce" | "ciphertext" | "tag", n) => {
        const sealed = seal(keyring, plaintext, context);
        const tampered = { ...sealed, [field]: flipBit(sealed[field], n % (sealed[field].length * 8)) };
        expect(() => open(keyring, tampered, context)).toThrow(expect.objectContaining({ code: Code.UNAUTHENTICATED }));
      }),
    );
  });
});

describe("replay guard", () => {
  const WINDOW = 5 * MINUTE;

  it("accepts a message once and refuses the same id again", () => {
    const clock = fakeClock();
    const guard = createReplayGuard({ windowMs: WINDOW, now: clock.now });
    guard.check("m1", clock.t);
    guard.check("m2", clock.t);
    expect(expectCode(() => guard.check("m1", clock.t), Code.UNAUTHENTICATED).message).toMatch(/seen/);
    clock.advance(WINDOW - 1);
    expectCode(() => guard.check("m1", clock.t - WINDOW + 1), Code.UNAUTHENTICATED);
  });

  it.each<[string, number, Code | undefined]>([
    ["now", 0, undefined],
    ["exactly a window old", -WINDOW, undefined],
    ["exactly a window ahead", WINDOW, undefined],
    ["a window and 1 ms old", -WINDOW - 1, Code.UNAUTHENTICATED],
    ["a window and 1 ms ahead", WINDOW + 1, Code.UNAUTHENTICATED],
    ["a day old", -24 * HOUR, Code.UNAUTHENTICATED],
    ["NaN", Number.NaN, Code.INVALID_ARGUMENT],
  ])("for a timestamp %s", (_, offset, code) => {
    const clock = fakeClock();
    const guard = createReplayGuard({ windowMs: WINDOW, now: clock.now });
    if (code === undefined) guard.check("m", clock.t + offset);
    else expectCode(() => guard.check("m", clock.t + offset), code);
  });

  it("forgets ids once their timestamp has left the window, and a replay is then refused as stale", () => {
    const clock = fakeClock();
    const guard = createReplayGuard({ windowMs: WINDOW, now: clock.now });
    const sentAt = clock.t;
    for (let i = 0; i < 100; i++) guard.check(`m${i}`, sentAt);
    guard.check("future", sentAt + WINDOW);
    expect(guard.size).toBe(101);

    clock.advance(WINDOW + 1);
    expect(expectCode(() => guard.check("m1", sentAt), Code.UNAUTHENTICATED).message).toMatch(/stale/);
    clock.advance(WINDOW / 8);
    guard.check("fresh", clock.t);
    // Memory is bounded by time: the old ids are gone; the future-dated one is still remembered.
    expect(guard.size).toBe(2);
    expectCode(() => guard.check("future", sentAt + WINDOW), Code.UNAUTHENTICATED);
  });

  it("refuses new messages with RESOURCE_EXHAUSTED when full, rather than forgetting ids in the window", () => {
    const clock = fakeClock();
    const guard = createReplayGuard({ windowMs: WINDOW, maxEntries: 3, now: clock.now });
    for (const id of ["a", "b", "c"]) guard.check(id, clock.t);
    expectCode(() => guard.check("d", clock.t), Code.RESOURCE_EXHAUSTED);
    expectCode(() => guard.check("a", clock.t), Code.UNAUTHENTICATED);
    clock.advance(2 * WINDOW);
    guard.check("d", clock.t);
    expect(guard.size).toBe(1);
  });

  it("refuses an empty id", () => {
    expectCode(() => createReplayGuard().check("", Date.now()), Code.INVALID_ARGUMENT);
  });
});
