import assert from "node:assert/strict";
import { test } from "node:test";
import { candidates, parseStep, planTree, Scaffold, TaskBook } from "../src/core/tasks";

// The scaffold of tests/test_agent_scripted.py's PLAN, as ornith/plan carries it.
const PLAN: Scaffold = {
  goal: "make test_add pass",
  strategy: "read, fix the operator, verify",
  steps: [
    { intent: "read calc.py", tools: ["read_file"], check: { kind: "context_read", description: "" } },
    { intent: "fix add", tools: ["edit", "run_tests"], check: { kind: "target_tests_pass", description: "" } },
    { intent: "finish", tools: ["finish"], check: { kind: "target_tests_pass", description: "" } },
  ],
  replan_when: ["tests still fail"],
  budget: { turns: 12, tokens: 20000 },
};

test("steps are read from the server's progress text", () => {
  assert.deepEqual(parseStep("step 2/3: fix add"), { index: 2, of: 3, intent: "fix add" });
  assert.equal(parseStep(""), null);
  assert.equal(parseStep(undefined), null);
  assert.equal(parseStep("verified"), null);
});

test("a fix goes running -> planned -> stepped -> verified -> applied", () => {
  const book = new TaskBook();
  book.started("t1", "Ornith: fix test_add");
  assert.equal(book.running().length, 1);
  book.planned({ taskId: "t1", scaffold: PLAN, replan: null });
  book.shown({ taskId: "t1", status: "running", step: "step 2/3: fix add" });
  let [node] = planTree(book.all());
  assert.equal(node.label, "Ornith: fix test_add");
  assert.equal(node.icon, "sync~spin");
  assert.equal(node.description, "step 2/3: fix add");
  const steps = node.children!.filter((c) => c.id.includes("/step/"));
  assert.deepEqual(steps.map((s) => s.icon), ["check", "arrow-right", "circle-large-outline"]);
  assert.equal(steps[1].label, "2. fix add");
  assert.equal(steps[1].description, "edit, run_tests");
  assert.match(steps[1].tooltip!, /target_tests_pass/);
  assert.equal(node.children![0].label, "make test_add pass");

  book.done({ taskId: "t1", status: "fixed", reason: "tests pass", verified: true });
  assert.equal(book.running().length, 0);
  assert.deepEqual(candidates(book, "apply").map((t) => t.id), ["t1"]);
  [node] = planTree(book.all());
  assert.equal(node.icon, "pass");
  assert.equal(node.description, "verified fix ready");
  assert.ok(node.children!.filter((c) => c.id.includes("/step/")).every((s) => s.icon === "check"));

  book.markApplied("t1");
  assert.deepEqual(candidates(book, "apply"), []);
  assert.deepEqual(candidates(book, "showDiff").map((t) => t.id), ["t1"]);
  assert.equal(planTree(book.all())[0].description, "applied");
});

test("a replan is shown and counted; a failed fix says why", () => {
  const book = new TaskBook();
  book.started("t2", "Ornith: fix test_mul");
  book.planned({ taskId: "t2", scaffold: PLAN });
  book.planned({ taskId: "t2", scaffold: PLAN, replan: "step 2 did not pass its check" });
  book.done({ taskId: "t2", status: "budget_exhausted", reason: "24 turns", verified: false });
  const [node] = planTree(book.all());
  assert.equal(node.icon, "error");
  assert.equal(node.description, "budget_exhausted: 24 turns");
  const replan = node.children!.find((c) => c.id.endsWith("/replan"))!;
  assert.match(replan.label, /step 2 did not pass/);
  assert.equal(replan.description, "plan 2");
  assert.deepEqual(candidates(book, "apply"), []);
  assert.deepEqual(candidates(book, "rollback").map((t) => t.id), ["t2"]);
});

test("a poll that finds the fix finished ends it even if fixDone was missed", () => {
  const book = new TaskBook();
  book.started("t3", "x");
  book.shown({ taskId: "t3", status: "fixed", verified: true, reason: "ok", scaffold: PLAN, title: "Ornith: fix x" });
  const t = book.get("t3")!;
  assert.equal(t.status, "fixed");
  assert.equal(t.verified, true);
  assert.equal(t.title, "Ornith: fix x");
  assert.ok(t.scaffold);
  assert.equal(book.shown({ taskId: "nope", status: "unknown" }), undefined);
});

test("newest first; a restarted task runs again; cancel lists running tasks", () => {
  const book = new TaskBook();
  book.started("a", "A");
  book.started("b", "B");
  assert.deepEqual(book.all().map((t) => t.id), ["b", "a"]);
  book.done({ taskId: "a", status: "cancelled", reason: "cancelled", verified: false });
  assert.deepEqual(candidates(book, "cancel").map((t) => t.id), ["b"]);
  assert.equal(planTree(book.all())[1].icon, "circle-slash");
  book.started("a");
  assert.deepEqual(book.all().map((t) => t.id), ["a", "b"]);
  assert.equal(book.get("a")!.status, "running");
  assert.equal(book.get("a")!.title, "A");
});
