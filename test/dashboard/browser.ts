import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext } from "playwright-core";

/** Debian's chromium (`apt-get install chromium`). */
export const CHROMIUM = "/usr/bin/chromium";

/** Why the browser tests cannot run here, or "" when they can. Under CI=true a missing browser is a failure, not a skip. */
export function browserMissing(): string {
  if (existsSync(CHROMIUM)) return "";
  const reason = `${CHROMIUM} is missing: install it with \`apt-get install chromium\``;
  if (process.env.CI === "true") throw new Error(`browser tests need chromium under CI: ${reason}`);
  return reason;
}

/** Builds the page as `npm run build:dashboard` does, so the tests serve what the sources say. */
export function buildDashboard(): void {
  execFileSync(process.execPath, [join(import.meta.dirname, "..", "..", "dashboard", "build.mjs")], { stdio: "inherit" });
}

/** A headless chromium with a fresh profile; close() removes the profile. */
export async function launchBrowser(options: { clientCertificates?: Array<{ origin: string; cert: Buffer; key: Buffer }> } = {}): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), "baton-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1400, height: 1000 },
    ...(options.clientCertificates ? { clientCertificates: options.clientCertificates.map((c) => ({ origin: c.origin, cert: c.cert, key: c.key })) } : {}),
    ...(options.clientCertificates ? { ignoreHTTPSErrors: true } : {}),
  });
  // A loaded two-core machine: a locator waits on its element for up to a minute (a passing test never does).
  context.setDefaultTimeout(60_000);
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
