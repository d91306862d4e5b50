import { BatonError, Code } from "../errors.js";
import type { Logger } from "../logging.js";
import type { ServiceEntry, ServiceKind, ServiceRegistry } from "./service-registry.js";

/** The instance of a participant that calls go to now. */
export interface PeerTarget<C> {
  channel: C;
  /** Which registered instance it is (its registry id): a new one holds none of the old one's state. */
  instance: string;
}

/** A participant found in the service registry, followed as instances come and go. */
export interface RegistryPeer<C> {
  /** The instance in use; UNAVAILABLE when none is registered. */
  resolve(): PeerTarget<C>;
  /** The entry in use, if any. */
  readonly current: ServiceEntry | undefined;
  /** Stops following; closes the channel. */
  close(): void;
}

const NAMES: Record<ServiceKind, string> = { coordinator: "coordinator", resource_manager: "resource manager", performance_monitor: "performance monitor" };

/**
 * Follows the instances of `kind` in the registry and keeps a channel to one of them: the
 * one in use as long as it is registered (its entry goes with its lease when it dies), then
 * the longest registered of the others. Resolves once the registry has been read.
 */
export async function followRegistryPeer<C extends { close(): void }>(
  registry: ServiceRegistry,
  kind: ServiceKind,
    // onSwitch: an instance is taken into use (the first one too: calls may have failed while there was none).
  options: { connect: (address: string) => C; logger: Logger; onSwitch?: (entry: ServiceEntry) => void },
): Promise<RegistryPeer<C>> {
  const stop = new AbortController();
  const log = options.logger.child({ component: "registry", service: kind });
  let current: { entry: ServiceEntry; target: PeerTarget<C> } | undefined;
  let warned = false;
  const choose = (entries: ServiceEntry[]) => {
    if (stop.signal.aborted) return;
    const same = current && entries.find((e) => e.id === current!.entry.id && e.address === current!.entry.address);
    if (same) return;
    const previous = current;
    const next = [...entries].sort((a, b) => a.since.localeCompare(b.since) || a.id.localeCompare(b.id))[0];
    current = next ? { entry: next, target: { channel: options.connect(next.address), instance: next.id } } : undefined;
    previous?.target.channel.close();
    if (next) {
      warned = false;
      options.onSwitch?.(next);
      log.info({ id: next.id, address: next.address, previous: previous?.entry.id }, `${NAMES[kind]} found in the service registry`);
    } else if (!warned) {
      warned = true;
      log.warn({ where: registry.where(kind), previous: previous?.entry.id }, `no ${NAMES[kind]} is registered: calls to it fail until one registers`);
    }
  };
  await registry.follow(kind, choose, stop.signal);
  return {
    resolve() {
      if (!current) throw new BatonError(Code.UNAVAILABLE, `no ${NAMES[kind]} is registered in ${registry.where(kind)}; start one (baton serve --only ${NAMES[kind].replace(" ", "-")} with the same store.etcd) or wait for it to register`);
      return current.target;
    },
    get current() {
      return current?.entry;
    },
    close() {
      stop.abort();
      current?.target.channel.close();
      current = undefined;
    },
  };
}
