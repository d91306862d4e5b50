import { Counter, type Registry } from "prom-client";

/** The count of one label set. */
export interface Tally {
  inc(n?: number): void;
}

/** A counter's definition: prom-client's, registered in `registry`. */
export interface TallyCounterOptions<L extends string> {
  name: string;
  help: string;
  labelNames: readonly L[];
  registry: Registry;
}

/**
 * A Prometheus counter counted in plain numbers, one per label set, and handed to
 * prom-client only when it is scraped. prom-client's inc() hashes and checks its labels
 * every time (a child from labels() too), and these count per message or per task.
 * Returns the tally of a label set: keep it where the labels are known once (per method,
 * per action), since finding it builds a key.
 */
export function tallyCounter<L extends string>(options: TallyCounterOptions<L>): (labels: Record<L, string>) => Tally {
  const { labelNames } = options;
  const sets = new Map<string, { labels: Record<L, string>; n: number; tally: Tally }>();
  new Counter({
    name: options.name,
    help: options.help,
    labelNames,
    registers: [options.registry],
    collect() {
      this.reset();
      for (const s of sets.values()) if (s.n > 0) this.inc(s.labels, s.n);
    },
  });
  return (labels) => {
    const key = labelNames.length === 1 ? labels[labelNames[0]!] : labelNames.map((l) => labels[l]).join("\u0000");
    let set = sets.get(key);
    if (!set) {
      const made = { labels: { ...labels }, n: 0, tally: { inc: (n = 1) => void (made.n += n) } };
      sets.set(key, (set = made));
    }
    return set.tally;
  };
}
