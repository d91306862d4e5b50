import { create } from "@bufbuild/protobuf";

import { ResourceSchema, type Resource, type ResourceRequest } from "../../gen/baton/v1/common_pb.js";
import { ReservationSchema, ResourceStateSchema, type Reservation, type ResourceState } from "../../gen/baton/v1/resource_manager_pb.js";
import { aborted, invalidArgument } from "../errors.js";

interface Held {
  resourceId: string;
  amount: number;
}

interface Entry {
  resource: Resource;
  agentId: string;
  version: bigint;
  reserved: number;
}

interface Booking {
  reservationId: string;
  holder: string;
  held: Held[];
}

const capacityOf = (r: Resource) => (r.capacity > 0 ? r.capacity : 1);

/** A filter of query(). */
export interface InventoryQuery {
  resourceIds?: string[];
  agentIds?: string[];
  kinds?: string[];
}

/**
 * The Resource Manager's inventory: resources offered by agents (from Hello or
 * configuration), each with a version bumped on every change, and all-or-nothing
 * reservations. A reservation that does not fit, or that names a version the resource
 * has moved past, is refused with ABORTED (the coordinator replans: resource_conflict).
 */
export class ResourceInventory {
  private readonly entries = new Map<string, Entry>();
  private readonly bookings = new Map<string, Booking>();

  /** Replaces what an agent offers; reservations on resources it still offers are kept. */
  register(agentId: string, resources: Resource[]): ResourceState[] {
    const seen = new Set<string>();
    for (const r of resources) {
      if (!r.resourceId) throw invalidArgument("resources: resource_id is required");
      if (seen.has(r.resourceId)) throw invalidArgument(`resources: ${r.resourceId} is listed twice`);
      const owner = this.entries.get(r.resourceId)?.agentId;
      if (owner && owner !== agentId) throw invalidArgument(`resource ${r.resourceId} is already offered by agent ${owner}`);
      seen.add(r.resourceId);
    }
    for (const [id, e] of this.entries) if (e.agentId === agentId && !seen.has(id) && e.reserved === 0) this.entries.delete(id);
    for (const r of resources) {
      const current = this.entries.get(r.resourceId);
      if (current) {
        current.resource = create(ResourceSchema, r);
        current.version++;
      } else {
        this.entries.set(r.resourceId, { resource: create(ResourceSchema, r), agentId, version: 1n, reserved: 0 });
      }
    }
    return this.query({ agentIds: [agentId] });
  }

  /** Resources matching every given filter, by id. */
  query(filter: InventoryQuery = {}): ResourceState[] {
    const ids = filter.resourceIds?.length ? new Set(filter.resourceIds) : undefined;
    const agents = filter.agentIds?.length ? new Set(filter.agentIds) : undefined;
    const kinds = filter.kinds?.length ? new Set(filter.kinds) : undefined;
    return [...this.entries.values()]
      .filter((e) => (!ids || ids.has(e.resource.resourceId)) && (!agents || agents.has(e.agentId)) && (!kinds || kinds.has(e.resource.kind)))
      .sort((a, b) => (a.resource.resourceId < b.resource.resourceId ? -1 : 1))
      .map((e) => this.stateOf(e));
  }

  private stateOf(e: Entry): ResourceState {
    const reservations: Reservation[] = [];
    for (const b of this.bookings.values()) {
      for (const h of b.held) if (h.resourceId === e.resource.resourceId) reservations.push(create(ReservationSchema, { reservationId: b.reservationId, resourceId: h.resourceId, amount: h.amount, holder: b.holder }));
    }
    return create(ResourceStateSchema, { resource: e.resource, agentId: e.agentId, reserved: e.reserved, available: capacityOf(e.resource) - e.reserved, version: e.version, reservations });
  }

  /** How much of a resource is free now. */
  available(resourceId: string): number {
    const e = this.entries.get(resourceId);
    return e ? capacityOf(e.resource) - e.reserved : 0;
  }

  /** The agent's resources with what is reserved on each (for the planner). */
  resourcesOf(agentId: string): Array<{ resourceId: string; kind: string; capacity: number; reserved: number }> {
    return [...this.entries.values()].filter((e) => e.agentId === agentId).map((e) => ({ resourceId: e.resource.resourceId, kind: e.resource.kind, capacity: e.resource.capacity, reserved: e.reserved }));
  }

  /**
   * Reserves all or nothing. The same reservation id reserves once (idempotent). Requests
   * name a resource id or a kind (any resource of it, limited to `agentId` when given).
   */
  reserve(options: { reservationId: string; holder: string; requests: ResourceRequest[]; expectedVersions?: Record<string, bigint>; agentId?: string }): Reservation[] {
    const existing = this.bookings.get(options.reservationId);
    if (existing) return existing.held.map((h) => create(ReservationSchema, { reservationId: existing.reservationId, resourceId: h.resourceId, amount: h.amount, holder: existing.holder }));
    for (const [id, version] of Object.entries(options.expectedVersions ?? {})) {
      const e = this.entries.get(id);
      if (!e) throw aborted(`resource ${id} is no longer offered`);
      if (e.version !== version) throw aborted(`resource ${id} is at version ${e.version}, not ${version}: replan`);
    }
    const held: Held[] = [];
    const pending = new Map<string, number>();
    const free = (e: Entry) => capacityOf(e.resource) - e.reserved - (pending.get(e.resource.resourceId) ?? 0);
    for (const [i, req] of options.requests.entries()) {
      if (req.amount < 0) throw invalidArgument(`requests[${i}].amount must be 0 or more`);
      if (!req.resourceId && !req.kind) throw invalidArgument(`requests[${i}] names neither a resource_id nor a kind`);
      let entry: Entry | undefined;
      if (req.resourceId) {
        entry = this.entries.get(req.resourceId);
        if (!entry) throw aborted(`resource ${req.resourceId} is not offered`);
      } else {
        entry = [...this.entries.values()]
          .filter((e) => e.resource.kind === req.kind && (!options.agentId || e.agentId === options.agentId))
          .sort((a, b) => (a.resource.resourceId < b.resource.resourceId ? -1 : 1))
          .find((e) => free(e) >= (req.amount > 0 ? req.amount : capacityOf(e.resource)));
        if (!entry) throw aborted(`no free resource of kind ${req.kind}${options.agentId ? ` on agent ${options.agentId}` : ""}`);
      }
      if (options.agentId && entry.agentId !== options.agentId) throw aborted(`resource ${entry.resource.resourceId} belongs to agent ${entry.agentId}, not ${options.agentId}`);
      const amount = req.amount > 0 ? req.amount : capacityOf(entry.resource);
      if (free(entry) + 1e-9 < amount) throw aborted(`resource ${entry.resource.resourceId} has ${free(entry)} free, ${amount} asked: replan`);
      pending.set(entry.resource.resourceId, (pending.get(entry.resource.resourceId) ?? 0) + amount);
      held.push({ resourceId: entry.resource.resourceId, amount });
    }
    for (const h of held) {
      const e = this.entries.get(h.resourceId)!;
      e.reserved += h.amount;
      e.version++;
    }
    this.bookings.set(options.reservationId, { reservationId: options.reservationId, holder: options.holder, held });
    return held.map((h) => create(ReservationSchema, { reservationId: options.reservationId, resourceId: h.resourceId, amount: h.amount, holder: options.holder }));
  }

  /** Releases a reservation (idempotent); false when nothing was held. */
  release(reservationId: string): boolean {
    const b = this.bookings.get(reservationId);
    if (!b) return false;
    this.bookings.delete(reservationId);
    for (const h of b.held) {
      const e = this.entries.get(h.resourceId);
      if (!e) continue;
      e.reserved = Math.max(0, e.reserved - h.amount);
      e.version++;
    }
    return true;
  }

  /** Reservations held, by id (for tests and Control). */
  reservations(): string[] {
    return [...this.bookings.keys()];
  }
}

