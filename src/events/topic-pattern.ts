/**
 * Topics and the patterns that select them, as the spec's RabbitMQ topic exchanges had it:
 * segments split on ".", in a pattern "*" matches exactly one segment, "#" zero or more.
 */

// Percent-style escapes keep topics injective: "a.b" and "a_b" are different ids, so they
// must be different segments. Ids never contain "%" today, so ids without dots keep the
// topics they always had; "%" is escaped too so that the mapping stays injective if ids widen.
const ESCAPES: Record<string, string> = { "%": "%25", ".": "%2E" };
const SEGMENT = /^(?:[A-Za-z0-9_-]|%2E|%25)+$/;

/** The topic segment of an id: "." becomes %2E and "%" %25, every other character stays; distinct ids give distinct segments. */
export function topicSegment(id: string): string {
  return id.replace(/[%.]/g, (c) => ESCAPES[c]!);
}

/** Whether a pattern is well-formed: non-empty segments of [A-Za-z0-9_-] and the escapes %2E and %25, or "*" or "#". */
export function isValidPattern(pattern: string): boolean {
  return pattern.split(".").every((s) => s === "*" || s === "#" || SEGMENT.test(s));
}

/** A pattern's segments with runs of "#" collapsed to one ("#.#" selects what "#" does). */
export function patternSegments(pattern: string): string[] {
  const out: string[] = [];
  for (const s of pattern.split(".")) if (s !== "#" || out.at(-1) !== "#") out.push(s);
  return out;
}

/**
 * Whether `topic` matches `pattern`. Iterative, in O(pattern x topic) segments at worst: "#"
 * is glob's "*" and "*" glob's "?", so on a mismatch only the latest "#" needs to take one
 * more segment (a longer take by an earlier "#" can always be given to the latest instead).
 */
export function topicMatches(pattern: string, topic: string): boolean {
  const p = patternSegments(pattern);
  const t = topic.split(".");
  let i = 0;
  let j = 0;
  let hash = -1; // index in p of the latest "#" seen
  let taken = 0; // index in t where that "#" stopped taking segments
  while (j < t.length) {
    if (i < p.length && p[i] === "#") {
      hash = i++;
      taken = j;
    } else if (i < p.length && (p[i] === "*" || p[i] === t[j])) {
      i++;
      j++;
    } else if (hash >= 0) {
      i = hash + 1;
      j = ++taken;
    } else {
      return false;
    }
  }
  while (i < p.length && p[i] === "#") i++;
  return i === p.length;
}
