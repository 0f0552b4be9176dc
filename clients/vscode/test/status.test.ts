import assert from "node:assert/strict";
import { test } from "node:test";
import { backendState, statusLine } from "../src/core/status";

test("the server's backend states map to starting / ready / error", () => {
  assert.equal(backendState({ state: "ready", health: "ok" }), "ready");
  assert.equal(backendState({ state: "starting" }), "starting");
  assert.equal(backendState({ state: "restarting" }), "starting");
  assert.equal(backendState({ state: "failed", error: "llama-server exited" }), "error");
  assert.equal(backendState({ state: "stopped" }), "stopped");
  assert.equal(backendState({ state: "stopped", error: "boom" }), "error");
  assert.equal(backendState(undefined), "starting");
});

test("the status line shows the backend when nothing runs", () => {
  assert.equal(statusLine({ backend: "starting" }).text, "$(sync~spin) Ornith: starting");
  const ready = statusLine({ backend: "ready", detail: "remote scripted" });
  assert.equal(ready.text, "$(check) Ornith: ready");
  assert.match(ready.tooltip, /remote scripted/);
  const error = statusLine({ backend: "error", detail: "llama-server exited" });
  assert.equal(error.error, true);
  assert.match(error.tooltip, /llama-server exited/);
});

test("a running fix shows its step; more fixes are counted", () => {
  const one = statusLine({ backend: "ready", running: [{ title: "Ornith: fix test_add", step: "step 2/3: fix add" }] });
  assert.equal(one.text, "$(sync~spin) Ornith: step 2/3: fix add");
  const two = statusLine({
    backend: "ready",
    running: [
      { title: "a", step: "" },
      { title: "b", step: "step 1/2: read" },
    ],
  });
  assert.equal(two.text, "$(sync~spin) Ornith: planning… (+1)");
  assert.match(two.tooltip, /b: step 1\/2: read/);
});

test("a long step is clipped; verified fixes are announced", () => {
  const long = statusLine({ backend: "ready", running: [{ title: "t", step: "step 1/1: " + "x".repeat(200) }] });
  assert.ok(long.text.length < 80 && long.text.endsWith("…"));
  assert.equal(statusLine({ backend: "ready", readyFixes: 1 }).text, "$(lightbulb) Ornith: ready, 1 verified fix");
  assert.equal(statusLine({ backend: "ready", readyFixes: 2 }).text, "$(lightbulb) Ornith: ready, 2 verified fixes");
});
