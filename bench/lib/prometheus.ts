// Histograms from a coordinator's /metrics (Prometheus text format): quantiles of what
// was observed between two scrapes.

/** Cumulative bucket counts of one histogram, summed over its label sets: upper bound -> count. */
export type Buckets = Map<number, number>;

/** The first histogram whose name matches `pattern`, with its buckets; undefined when there is none. */
export function findHistogram(text: string, pattern: RegExp): { name: string; buckets: Buckets } | undefined {
  const name = [...text.matchAll(/^# TYPE (\S+) histogram$/gm)].map((m) => m[1]!).find((n) => pattern.test(n));
  if (!name) return undefined;
  return { name, buckets: bucketsOf(text, name) };
}

/** Buckets of histogram `name`. */
export function bucketsOf(text: string, name: string): Buckets {
  const buckets: Buckets = new Map();
  const re = new RegExp(`^${name}_bucket\\{(.*)\\} (\\S+)$`, "gm");
  for (const m of text.matchAll(re)) {
    const le = /le="([^"]+)"/.exec(m[1]!)?.[1];
    if (le === undefined) continue;
    const bound = le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le);
    buckets.set(bound, (buckets.get(bound) ?? 0) + Number(m[2]));
  }
  return buckets;
}

/** Quantile q of what was observed between `before` and `after`, interpolated within its bucket (NaN when nothing was). */
export function quantileBetween(before: Buckets | undefined, after: Buckets, q: number): number {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const counts = bounds.map((b) => (after.get(b) ?? 0) - (before?.get(b) ?? 0));
  const total = counts.at(-1) ?? 0;
  if (total <= 0) return Number.NaN;
  const rank = q * total;
  for (let i = 0; i < bounds.length; i++) {
    if (counts[i]! < rank) continue;
    const lo = i === 0 ? 0 : bounds[i - 1]!;
    const hi = bounds[i]!;
    if (!Number.isFinite(hi)) return lo;
    const below = i === 0 ? 0 : counts[i - 1]!;
    const inBucket = counts[i]! - below;
    return inBucket > 0 ? lo + ((hi - lo) * (rank - below)) / inBucket : hi;
  }
  return bounds.at(-2) ?? Number.NaN;
}
