import { SETTINGS, type Leaf, type Node } from "./config-settings.js";

function describe(leaf: Leaf<unknown>): string {
  const parts = [leaf.doc];
  if (leaf.unit) parts.push(`Unit: ${leaf.unit}.`);
  if (leaf.derived) parts.push(`Default: ${leaf.derived}.`);
  if (leaf.env) parts.push(`Environment: ${leaf.env}.`);
  if (leaf.flag) parts.push(`Flag: ${leaf.flag}.`);
  return parts.join(" ");
}

function schemaOf(node: Node): Record<string, unknown> {
  if (!node.leaf) {
    return {
      type: "object",
      description: node.doc,
      additionalProperties: false,
      properties: Object.fromEntries(Object.entries(node.children).map(([k, child]) => [k, schemaOf(child)])),
    };
  }
  const common: Record<string, unknown> = { description: describe(node), default: node.default };
  switch (node.kind) {
    case "string":
      return { type: "string", ...common };
    case "enum":
      return { type: "string", enum: [...node.values!], ...common };
    case "bool":
      return { type: "boolean", ...common };
    case "int":
    case "number":
      return { type: node.kind === "int" ? "integer" : "number", ...(node.min !== undefined ? { minimum: node.min } : {}), ...(node.max !== undefined ? { maximum: node.max } : {}), ...common };
    case "list":
      return { type: "array", items: { type: "string" }, ...common };
    case "records":
      return { type: "array", items: node.item, ...common };
  }
}

/** The JSON Schema (2020-12) of a baton config file, derived from the settings table. */
export function configSchema(): Record<string, unknown> {
  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    title: "baton configuration file",
    ...schemaOf(SETTINGS),
  };
}
