import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { explicitValue, initializationOptions, needsRestart, serverKeys, serverSettings } from "../src/core/settings";

const manifest = JSON.parse(readFileSync(join(__dirname, "..", "..", "package.json"), "utf8"));
const properties: Record<string, unknown> = manifest.contributes.configuration.properties;

test("every ornith.* setting but ornith.server.* is sent to the server", () => {
  const keys = serverKeys(properties);
  assert.ok(keys.includes("backend.kind") && keys.includes("agent.testTimeoutS") && keys.includes("guard.judge"));
  assert.ok(keys.includes("logDir"));
  assert.ok(!keys.some((k) => k.startsWith("server.")), "the client's own settings must not reach the server");
  assert.equal(keys.length, Object.keys(properties).length - 3);
});

test("settings become nested groups, camelCase kept for the server to convert", () => {
  const set: Record<string, unknown> = {
    "backend.kind": "remote",
    "backend.endpoint": "http://127.0.0.1:8000/v1",
    "backend.apiKeyEnv": "ORNITH_API_KEY",
    "agent.maxTurns": 8,
    "agent.testCommand": ["python", "-m", "pytest", "-x"],
    "guard.allowNewTests": false,
    logDir: "/tmp/logs",
  };
  const out = serverSettings(serverKeys(properties), (k) => set[k]);
  assert.deepEqual(out, {
    backend: { kind: "remote", endpoint: "http://127.0.0.1:8000/v1", apiKeyEnv: "ORNITH_API_KEY" },
    agent: { maxTurns: 8, testCommand: ["python", "-m", "pytest", "-x"] },
    guard: { allowNewTests: false },
    logDir: "/tmp/logs",
  });
});

test("unset, null and blank values are left out, so ornith.toml and the defaults still apply", () => {
  const set: Record<string, unknown> = { "backend.model": null, "backend.endpoint": "  ", "backend.quant": undefined };
  assert.deepEqual(initializationOptions(serverKeys(properties), (k) => set[k]), { ornith: {} });
});

test("the most specific explicit value wins; a default alone is not explicit", () => {
  assert.equal(explicitValue({ globalValue: "a", workspaceValue: "b", workspaceFolderValue: "c" }), "c");
  assert.equal(explicitValue({ globalValue: "a", workspaceValue: "b" }), "b");
  assert.equal(explicitValue({ globalValue: 0 }), 0);
  assert.equal(explicitValue({ globalValue: false }), false);
  assert.equal(explicitValue({}), undefined);
  assert.equal(explicitValue(undefined), undefined);
});

test("only ornith.server.* changes restart the server", () => {
  assert.equal(needsRestart((s) => s === "ornith.server"), true);
  assert.equal(needsRestart((s) => s === "ornith.backend"), false);
});

test("every setting has a description and a type", () => {
  for (const [key, schema] of Object.entries(properties) as [string, { description?: string; type?: unknown }][]) {
    assert.ok(schema.description, `${key} has no description`);
    assert.ok(schema.type, `${key} has no type`);
  }
});
