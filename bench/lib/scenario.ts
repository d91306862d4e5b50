// What a scenario is given and returns.
import type { BenchPki } from "./pki.js";
import type { ScenarioResult } from "./results.js";

/** Shared by every scenario of one invocation. */
export interface BenchContext {
  /** Tiny counts, one run, a few seconds: CI's check that the scenario still completes. */
  smoke: boolean;
  /** Runs per figure (median of them; 1 in smoke). */
  runs: number;
  /** Where coordinator CPU profiles go (--profile); undefined when not profiling. */
  profileDir: string | undefined;
  /** The PKI, with at least as many agent certificates as the largest scenario asked for. */
  pki: BenchPki;
  /** Progress lines for the terminal. */
  log(line: string): void;
  /** Results of the scenarios already run in this invocation (peers run first, for the ratios). */
  earlier: Map<string, ScenarioResult>;
}

/** A benchmark scenario. */
export interface Scenario {
  name: string;
  /** One line for --help. */
  description: string;
  /** A peer (RabbitMQ, raw grpc-js): not baton, skipped by --smoke. */
  peer?: boolean;
  /** Agent certificates it needs. */
  agents(smoke: boolean): number;
  run(ctx: BenchContext): Promise<ScenarioResult>;
}
