import type { Etcd3 } from "etcd3";
import { prefixEnd } from "../store/index.js";
import { followPrefix } from "./key-watch.js";

/** The spec's service_registry services. */
export type ServiceKind = "coordinator" | "resource_manager" | "performance_monitor";

/** One registered instance. */
export interface ServiceEntry {
  kind: ServiceKind;
  id: string;
  /** Where it is reached, "host:port". */
  address: string;
  /** When it registered, ISO 8601. */
  since: string;
}

/**
 * Where participants find each other. The spec names Consul; etcd fills it here, and a
 * Consul implementation (a service with a TTL check per entry) could fill the same face.
 */
export interface ServiceRegistry {
  /** Registers an instance for as long as this process's lease lives. */
  register(entry: Omit<ServiceEntry, "since">): Promise<void>;
  /** The live instances of a kind, by id. */
  lookup(kind: ServiceKind): Promise<ServiceEntry[]>;
  /** The address of the coordinator that leads now, or "" when none does. */
  leader(): Promise<string>;
  /** Calls onChange with the live instances of a kind, now and whenever they may have changed, until `signal` aborts; resolves once the first answer is delivered. */
  follow(kind: ServiceKind, onChange: (entries: ServiceEntry[]) => void, signal: AbortSignal): Promise<void>;
  /** Where a kind's instances are looked for, in words ("etcd under baton/services/resource_manager/"). */
  where(kind: ServiceKind): string;
}

/** The registry in etcd: "<prefix>services/<kind>/<id>" → JSON, on the process's lease, so a dead process drops out by itself. */
export function etcdServiceRegistry(client: Etcd3, options: { prefix: string; leaderKey: string; leaseId: () => Promise<string>; recheckMs?: number }): ServiceRegistry {
  const keyOf = (kind: string, id: string) => Buffer.from(`${options.prefix}services/${kind}/${id}`);
  // An entry that is not baton's JSON (written by hand) is skipped, not fatal to whoever follows the registry.
  const parse = (kvs: Array<{ value: Buffer }>) =>
    kvs.flatMap((kv) => {
      try {
        const entry = JSON.parse(kv.value.toString("utf8")) as ServiceEntry;
        return typeof entry?.address === "string" && typeof entry.id === "string" ? [entry] : [];
      } catch {
        return [];
      }
    });
  return {
    async register(entry) {
      const value: ServiceEntry = { ...entry, since: new Date().toISOString() };
      await client.kv.put({ key: keyOf(entry.kind, entry.id), value: Buffer.from(JSON.stringify(value)), lease: await options.leaseId() });
    },
    async lookup(kind) {
      const from = keyOf(kind, "");
      const answer = await client.kv.range({ key: from, range_end: prefixEnd(from) });
      return parse(answer.kvs);
    },
    follow(kind, onChange, signal) {
      return followPrefix(client, keyOf(kind, ""), { recheckMs: options.recheckMs ?? 1000, signal, onRead: (state) => onChange(parse(state.kvs)) });
    },
    where(kind) {
      return `etcd under ${keyOf(kind, "").toString("utf8")}`;
    },
    async leader() {
      const answer = await client.kv.range({ key: Buffer.from(options.leaderKey) });
      return answer.kvs[0]?.value.toString("utf8") ?? "";
    },
  };
}
