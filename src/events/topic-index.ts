import { patternSegments } from "./topic-pattern.js";

interface Node<T> {
  /** Edges by segment; "*" and "#" are the wildcard edges (no topic segment is either). */
  readonly children: Map<string, Node<T>>;
  readonly parent: Node<T> | undefined;
  /** The segment of the edge from the parent. */
  readonly segment: string;
  /** Who subscribed with the pattern that ends here. */
  readonly subscribers: Set<T>;
}

const node = <T>(parent: Node<T> | undefined, segment: string): Node<T> => ({ children: new Map(), parent, segment, subscribers: new Set() });

/**
 * Topic patterns of many subscribers in one trie over segments (as RabbitMQ's topic
 * exchange and qlobber do), so that routing a topic costs about its depth times the
 * pattern prefixes it actually matches, not the number of patterns. Nothing recurses:
 * a pattern of any length can be added, matched and removed.
 */
export class TopicIndex<T> {
  private readonly root = node<T>(undefined, "");

  /** Subscribes `subscriber` to `pattern` (a valid pattern; runs of "#" are collapsed). */
  add(pattern: string, subscriber: T): void {
    let at = this.root;
    for (const s of patternSegments(pattern)) {
      let next = at.children.get(s);
      if (!next) at.children.set(s, (next = node(at, s)));
      at = next;
    }
    at.subscribers.add(subscriber);
  }

  /** Unsubscribes `subscriber` from `pattern`, and drops the branch it leaves empty. */
  remove(pattern: string, subscriber: T): void {
    let at: Node<T> | undefined = this.root;
    for (const s of patternSegments(pattern)) {
      at = at.children.get(s);
      if (!at) return;
    }
    at.subscribers.delete(subscriber);
    while (at.parent && at.subscribers.size === 0 && at.children.size === 0) {
      at.parent.children.delete(at.segment);
      at = at.parent;
    }
  }

  /** Every subscriber with a pattern that matches `topic`, once each. */
  match(topic: string): Set<T> {
    // The set of trie nodes reachable after each topic segment (an NFA run); "#" nodes
    // are entered without consuming a segment and may consume any number of them.
    let level: Array<Node<T>> = [];
    let seen = new Set<Node<T>>();
    const enter = (n: Node<T> | undefined) => {
      for (; n && !seen.has(n); n = n.children.get("#")) {
        seen.add(n);
        level.push(n);
      }
    };
    enter(this.root);
    for (const s of topic.split(".")) {
      const from = level;
      level = [];
      seen = new Set();
      for (const n of from) {
        if (s !== "*" && s !== "#") enter(n.children.get(s));
        enter(n.children.get("*"));
        if (n.segment === "#") enter(n);
      }
      if (level.length === 0) break;
    }
    const out = new Set<T>();
    for (const n of level) for (const sub of n.subscribers) out.add(sub);
    return out;
  }

  /** Whether no pattern is subscribed. */
  get empty(): boolean {
    return this.root.children.size === 0 && this.root.subscribers.size === 0;
  }
}
