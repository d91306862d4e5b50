import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "../helpers/process.js";

// README.md and every Markdown file under docs/: a clone of the repository is all a reader has.
function markdownFiles(): string[] {
  const found = [join(ROOT, "README.md")];
  const walk = (dir: string) => {
    if (!existsSync(dir)) return;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".md")) found.push(path);
    }
  };
  walk(join(ROOT, "docs"));
  return found;
}

// Link targets outside code: inline `[text](target "title")`, images, and `[id]: target` definitions.
function linkTargets(markdown: string): string[] {
  const prose = markdown
    .replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, "")
    .replace(/`[^`\n]*`/g, "");
  const targets: string[] = [];
  for (const m of prose.matchAll(/\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+"[^"]*")?\s*\)/g)) targets.push(m[1]!);
  for (const m of prose.matchAll(/^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)/gm)) targets.push(m[1]!);
  return targets.map((t) => (t.startsWith("<") ? t.slice(1, -1) : t));
}

const external = (target: string) => /^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("#");

describe("documentation links", () => {
  it("finds inline, image and reference links but not those in code", () => {
    const md = ["See [a](docs/a.md#x) and ![b](<img/b c.png> \"t\").", "`[c](no.md)`", "```", "[d](no.md)", "```", "[e]: ./e.md", "[f](https://example.org)"].join("\n");
    expect(linkTargets(md)).toEqual(["docs/a.md#x", "img/b c.png", "https://example.org", "./e.md"]);
  });

  it.each(markdownFiles().map((f) => [relative(ROOT, f)]))("every relative link in %s names a file in the repository", (file) => {
    const path = join(ROOT, file);
    const broken: string[] = [];
    for (const target of linkTargets(readFileSync(path, "utf8"))) {
      if (external(target)) continue;
      const pathPart = decodeURIComponent(target.split(/[?#]/)[0]!);
      const resolved = resolve(dirname(path), pathPart);
      if (!`${resolved}${sep}`.startsWith(resolve(ROOT) + sep)) broken.push(`${target} (outside the repository)`);
      else if (!existsSync(resolved)) broken.push(`${target} (no such file)`);
    }
    expect(broken).toEqual([]);
  });
});
