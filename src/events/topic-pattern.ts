/**
 * AMQP topic-exchange matching, as the spec's RabbitMQ exchanges had it: segments split
 * on ".", "*" matches exactly one segment, "#" matches zero or more.
 */
export function topicMatches(pattern: string, topic: string): boolean {
  return match(pattern.split("."), 0, topic.split("."), 0);
}

function match(p: string[], i: number, t: string[], j: number): boolean {
  if (i === p.length) return j === t.length;
  const seg = p[i]!;
  if (seg === "#") {
    for (let k = j; k <= t.length; k++) if (match(p, i + 1, t, k)) return true;
    return false;
  }
  if (j === t.length) return false;
  return (seg === "*" || seg === t[j]) && match(p, i + 1, t, j + 1);
}

/** Whether a pattern is well-formed: non-empty segments of [A-Za-z0-9_-], "*" or "#". */
export function isValidPattern(pattern: string): boolean {
  return pattern.split(".").every((s) => s === "*" || s === "#" || /^[A-Za-z0-9_-]+$/.test(s));
}
