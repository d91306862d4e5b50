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

  /** Every subscriber with a pattern that matches `topic`, once each (a new array: the caller may unsubscribe while it walks it). */
  match(topic: string): T[] {
    // The set of trie nodes reachable after each topic segment (an NFA run); "#" nodes
    // are entered without consuming a segment and may consume any number of them. Every
    // state change is routed here: the segments are read in place, and a level is a
    // short array searched by hand until it is long enough to need a set.
    let level = new NodeLevel<T>();
    level.enter(this.root);
    for (let at = 0; at <= topic.length && level.nodes.length > 0; ) {
      let dot = topic.indexOf(".", at);
      if (dot < 0) dot = topic.length;
      const s = topic.slice(at, dot);
      at = dot + 1;
      const from = level.nodes;
      level = new NodeLevel<T>();
      for (const n of from) {
        if (s !== "*" && s !== "#") level.enter(n.children.get(s));
        level.enter(n.children.get("*"));
        if (n.segment === "#") level.enter(n);
      }
    }
    const nodes = level.nodes;
    if (nodes.length === 1) return [...nodes[0]!.subscribers];
    const out = new Set<T>();
    for (const n of nodes) for (const sub of n.subscribers) out.add(sub);
    return [...out];
  }

  /** Whether no pattern is subscribed. */
  get empty(): boolean {
    return this.root.children.size === 0 && this.root.subscribers.size === 0;
  }
}

// Levels up to this long are searched by hand; past it (patterns of many wildcards) a set keeps entering linear.
const SMALL_LEVEL = 16;

/** The trie nodes of one step of match(), each once. */
class NodeLevel<T> {
  readonly nodes: Array<Node<T>> = [];
  private seen: Set<Node<T>> | undefined;

  /** Adds `n` and the "#" nodes below it, stopping at one already here. */
  enter(n: Node<T> | undefined): void {
    for (; n && !this.has(n); n = n.children.get("#")) {
      this.nodes.push(n);
      this.seen?.add(n);
      if (!this.seen && this.nodes.length > SMALL_LEVEL) this.seen = new Set(this.nodes);
    }
  }

  private has(n: Node<T>): boolean {
    return this.seen ? this.seen.has(n) : this.nodes.includes(n);
  }
}
