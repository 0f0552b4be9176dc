/**
 * VS Code settings -> the server's settings.
 *
 * Only values the user actually set are sent.  The server merges
 * defaults < ornith.toml < editor < flags < environment, so sending VS Code's
 * defaults would silently override a project's ornith.toml.  `ornith.server.*`
 * says how to reach the server and is never sent to it: the server rejects
 * unknown settings.
 */

export const SECTION = "ornith";
const CLIENT_ONLY = "server.";

/** A setting's value as the user set it, or undefined when left at the default. */
export type Lookup = (key: string) => unknown;

/** The keys under `ornith.` that belong to the server, from package.json's contributes. */
export function serverKeys(properties: Record<string, unknown>): string[] {
  return Object.keys(properties)
    .filter((full) => full.startsWith(SECTION + "."))
    .map((full) => full.slice(SECTION.length + 1))
    .filter((key) => !key.startsWith(CLIENT_ONLY));
}

function isUnset(value: unknown): boolean {
  return value === undefined || value === null || (typeof value === "string" && value.trim() === "");
}

/**
 * `{"backend.kind": "remote", "agent.maxTurns": 8}` -> `{backend: {kind: "remote"}, agent: {maxTurns: 8}}`.
 * Keys stay camelCase: the server turns them into snake_case itself.
 */
export function serverSettings(keys: readonly string[], lookup: Lookup): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    const value = lookup(key);
    if (isUnset(value)) continue;
    const parts = key.split(".");
    let node = out;
    for (const part of parts.slice(0, -1)) {
      const next = node[part];
      if (typeof next !== "object" || next === null || Array.isArray(next)) node[part] = {};
      node = node[part] as Record<string, unknown>;
    }
    node[parts[parts.length - 1]] = value;
  }
  return out;
}

/** What goes in `initializationOptions` and in `workspace/didChangeConfiguration`. */
export function initializationOptions(keys: readonly string[], lookup: Lookup): { ornith: Record<string, unknown> } {
  return { [SECTION]: serverSettings(keys, lookup) } as { ornith: Record<string, unknown> };
}

/**
 * The most specific value the user set (folder > workspace > user), from the
 * shape `WorkspaceConfiguration.inspect()` returns; undefined when only the
 * default applies.
 */
export function explicitValue<T>(inspected: {
  globalValue?: T;
  workspaceValue?: T;
  workspaceFolderValue?: T;
} | undefined): T | undefined {
  if (!inspected) return undefined;
  for (const value of [inspected.workspaceFolderValue, inspected.workspaceValue, inspected.globalValue]) {
    if (value !== undefined) return value;
  }
  return undefined;
}

/** True when a configuration change needs a new server process rather than a notification. */
export function needsRestart(affects: (section: string) => boolean): boolean {
  return affects(`${SECTION}.server`);
}
