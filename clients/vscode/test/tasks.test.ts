import assert from "node:assert/strict";
import { test } from "node:test";
import { candidates, planTree, TaskBook } from "../src/core/tasks";
import type { DoneEvent, PlanEvent, Scaffold, ShowResult, StepEvent } from "../src/wire";

// The scaffold of tests/test_agent_scripted.py's PLAN, as ornith/plan carries it.
const PLAN: Scaffold = {
  goal: "make test_add pass",
  strategy: "read, fix the operator, verify",
  steps: [
    { intent: "read calc.py", tools: ["read_file"], check: { kind: "context_read", description: "" } },
    { intent: "fix add", tools: ["edit", "run_tests"], check: { kind: "target_tests_pass", description: "" } },
    { intent: "finish", tools: ["finish"], check: { kind: "target_tests_pass", description: "" } },
  ],
  budget: { turns: 12, tokens: 20000 },
};

// Whole payloads, as the server sends them: the types are the wire schema's, so a field it drops fails to compile.
const plan = (taskId: string, replan: string | null = null): PlanEvent => ({ kind: "plan", taskId, scaffold: PLAN, replan });
const step = (taskId: string, index: number, intent: string): StepEvent => ({ kind: "step", taskId, title: "", index, of: 3, intent });
const done = (taskId: string, status: DoneEvent["status"], reason: string, verified: boolean): DoneEvent => ({
  kind: "done",
  taskId,
  title: "",
  status,
  reason,
  verified,
});
const shown = (taskId: string, fields: Partial<ShowResult>): ShowResult => ({
  taskId,
  status: "running",
  title: "",
  step: "",
  error: null,
  scaffold: null,
  diff: "",
  verified: false,
  reason: "",
  checkpoint: null,
  files: [],
  ...fields,
});

test("ornith/step moves the current step; a new plan starts the steps over", () => {
  const book = new TaskBook();
  book.started("t0", "x");
  book.planned(plan("t0"));
  assert.equal(book.stepped(step("t0", 2, "fix add")).step, "step 2/3: fix add");
  assert.equal(book.get("t0")!.stepIndex, 2);
  book.planned(plan("t0", "step 2 did not pass its check"));
  assert.equal(book.get("t0")!.step, "");
  assert.equal(book.get("t0")!.stepIndex, 0);
  // a step of a task this window never started (another client's) is remembered too
  assert.equal(book.stepped(step("elsewhere", 1, "read calc.py")).status, "running");
});

test("a fix goes running -> planned -> stepped -> verified -> applied", () => {
  const book = new TaskBook();
  book.started("t1", "Ornith: fix test_add");
  assert.equal(book.running().length, 1);
  book.planned(plan("t1"));
  book.stepped(step("t1", 1, "read calc.py"));
  book.stepped(step("t1", 2, "fix add"));
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

  book.done(done("t1", "fixed", "tests pass", true));
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
  book.planned(plan("t2"));
  book.planned(plan("t2", "step 2 did not pass its check"));
  book.done(done("t2", "budget", "24 turns", false));
  const [node] = planTree(book.all());
  assert.equal(node.icon, "error");
  assert.equal(node.description, "budget: 24 turns");
  const replan = node.children!.find((c) => c.id.endsWith("/replan"))!;
  assert.match(replan.label, /step 2 did not pass/);
  assert.equal(replan.description, "plan 2");
  assert.deepEqual(candidates(book, "apply"), []);
  assert.deepEqual(candidates(book, "rollback").map((t) => t.id), ["t2"]);
});

test("Show Plan that finds the fix finished ends it even if fixDone was missed", () => {
  const book = new TaskBook();
  book.started("t3", "x");
  book.shown(shown("t3", { status: "fixed", verified: true, reason: "ok", scaffold: PLAN, title: "Ornith: fix x" }));
  const t = book.get("t3")!;
  assert.equal(t.status, "fixed");
  assert.equal(t.verified, true);
  assert.equal(t.title, "Ornith: fix x");
  assert.ok(t.scaffold);
  assert.equal(book.shown(shown("nope", { status: "unknown" })), undefined);
});

test("newest first; a restarted task runs again; cancel lists running tasks", () => {
  const book = new TaskBook();
  book.started("a", "A");
  book.started("b", "B");
  assert.deepEqual(book.all().map((t) => t.id), ["b", "a"]);
  book.done(done("a", "cancelled", "cancelled", false));
  assert.deepEqual(candidates(book, "cancel").map((t) => t.id), ["b"]);
  assert.equal(planTree(book.all())[1].icon, "circle-slash");
  book.started("a");
  assert.deepEqual(book.all().map((t) => t.id), ["a", "b"]);
  assert.equal(book.get("a")!.status, "running");
  assert.equal(book.get("a")!.title, "A");
});
