import { once } from "node:events";
import { connect as tlsConnect } from "node:tls";
import { describe, expect, it } from "vitest";
import { useFixture } from "../helpers/fixture.js";
import { startServer } from "../helpers/server.js";

// A connection's peer certificate is read once and kept (connection-guard.ts), which is
// sound only if the peer can never present another one on the same connection: TLS 1.2
// renegotiation is that way, so the listener refuses it.

const fx = useFixture();

describe("TLS renegotiation", () => {
  it("a TLS 1.2 client that asks to renegotiate loses its connection", async () => {
    // A long preface deadline, so only a refused renegotiation can close the connection.
    fx.srv = await startServer(fx.pki, { transport: { prefaceTimeoutMs: 120_000 } });
    const leaf = await fx.pki.issue("operator", "renegotiator");
    const socket = tlsConnect({ host: "localhost", port: fx.srv.port, servername: "localhost", ca: fx.pki.ca.certPem, cert: leaf.certPem, key: leaf.keyPem, ALPNProtocols: ["h2"], maxVersion: "TLSv1.2" });
    fx.defer(() => socket.destroy());
    socket.on("error", () => {});
    await once(socket, "secureConnect");
    expect(socket.getProtocol()).toBe("TLSv1.2");
    const closed = once(socket, "close").then(() => "closed");
    expect(socket.renegotiate({ rejectUnauthorized: true }, () => {})).toBe(true);
    // Accepted, the connection would stay open (the client's callback reports no error either way).
    const bound = new Promise((resolve) => setTimeout(() => resolve("still open: the server renegotiated"), 20_000).unref());
    expect(await Promise.race([closed, bound])).toBe("closed");
  });
});
