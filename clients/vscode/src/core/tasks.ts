/**
 * What the client knows about fixes: started from `ornith.fix`, planned from
 * `ornith/plan`, stepped from `ornith/step`, finished from `ornith/fixDone`.
 * The plan tree view and the status bar are drawn from this book.  The
 * payloads' types are generated from the server's wire schema (`../wire`).
 */

import type { DoneEvent, PlanEvent, Scaffold, ShowResult, StepEvent } from "../wire";

export interface TaskView {
  id: string;
  title: string;
  /** "running", or the report's status ("fixed", ...), "cancelled", "error". */
  status: string;
  step: string;
  /** The step now running (1-based), from `ornith/step`; 0 before the first. */
  stepIndex: number;
  scaffold?: Scaffold;
  /** Why the last plan replaced the one before, if it did. */
  replan?: string | null;
  plans: number;
  verified: boolean;
  reason: string;
  applied: boolean;
  order: number;
}

export class TaskBook {
  private tasks = new Map<string, TaskView>();
  private counter = 0;

  private ensure(id: string): TaskView {
    let task = this.tasks.get(id);
    if (!task) {
      task = { id, title: id, status: "running", step: "", stepIndex: 0, plans: 0, verified: false, reason: "", applied: false, order: this.counter++ };
      this.tasks.set(id, task);
    }
    return task;
  }

  /** A fix was asked for (the task JSON sent with `ornith.fix`). */
  started(id: string, title?: string): TaskView {
    const task = this.ensure(id);
    if (title) task.title = title;
    if (task.status !== "running") {
      Object.assign(task, { status: "running", step: "", stepIndex: 0, verified: false, reason: "", applied: false });
      task.order = this.counter++;
    }
    return task;
  }

  planned(n: PlanEvent): TaskView {
    const task = this.ensure(n.taskId);
    task.scaffold = n.scaffold;
    task.replan = n.replan;
    task.plans += 1;
    task.step = "";
    task.stepIndex = 0;
    return task;
  }

  stepped(n: StepEvent): TaskView {
    const task = this.ensure(n.taskId);
    task.step = `step ${n.index}/${n.of}: ${n.intent}`;
    task.stepIndex = n.index;
    return task;
  }

  /** `ornith.showPlan`'s answer, asked for by the user. */
  shown(r: ShowResult): TaskView | undefined {
    if (r.status === "unknown") return this.tasks.get(r.taskId);
    const task = this.ensure(r.taskId);
    if (r.title) task.title = r.title;
    if (r.step) task.step = r.step;
    if (r.scaffold && !task.scaffold) task.scaffold = r.scaffold;
    if (!["running", "queued", "pending"].includes(r.status) && task.status === "running") {
      task.status = r.status;
      task.verified = r.verified;
      task.reason = r.reason || r.error || "";
    }
    return task;
  }

  done(n: DoneEvent): TaskView {
    const task = this.ensure(n.taskId);
    Object.assign(task, { status: n.status, reason: n.reason, verified: n.verified });
    if (n.title) task.title = n.title;
    return task;
  }

  markApplied(id: string): void {
    const task = this.tasks.get(id);
    if (task) task.applied = true;
  }

  get(id: string): TaskView | undefined {
    return this.tasks.get(id);
  }

  /** Newest first. */
  all(): TaskView[] {
    return [...this.tasks.values()].sort((a, b) => b.order - a.order);
  }

  running(): TaskView[] {
    return this.all().filter((t) => t.status === "running");
  }

  /** Verified and not yet applied. */
  verified(): TaskView[] {
    return this.all().filter((t) => t.verified && !t.applied);
  }
}

/** Which tasks a command may act on, best first. */
export function candidates(book: TaskBook, command: "apply" | "showDiff" | "cancel" | "rollback" | "showPlan"): TaskView[] {
  switch (command) {
    case "apply":
      return book.verified();
    case "showDiff":
      return book.all().filter((t) => t.verified);
    case "cancel":
      return book.running();
    case "rollback":
      return book.all().filter((t) => t.status !== "running");
    case "showPlan":
      return book.all();
  }
}

export interface TreeNode {
  id: string;
  label: string;
  description?: string;
  tooltip?: string;
  /** A codicon id. */
  icon?: string;
  taskId?: string;
  children?: TreeNode[];
}

function taskIcon(task: TaskView): string {
  if (task.status === "running") return "sync~spin";
  if (task.verified) return task.applied ? "check-all" : "pass";
  if (task.status === "cancelled") return "circle-slash";
  return "error";
}

function taskDescription(task: TaskView): string {
  if (task.status === "running") return task.step || (task.scaffold ? "plan ready" : "planning…");
  if (task.verified) return task.applied ? "applied" : "verified fix ready";
  return task.reason ? `${task.status}: ${task.reason}` : task.status;
}

/** The plan tree: one node per task, its goal, strategy and steps under it. */
export function planTree(tasks: readonly TaskView[]): TreeNode[] {
  return tasks.map((task) => {
    const children: TreeNode[] = [];
    const s = task.scaffold;
    if (s) {
      children.push({ id: `${task.id}/goal`, label: s.goal, description: "goal", icon: "target", taskId: task.id });
      children.push({ id: `${task.id}/strategy`, label: s.strategy, description: "strategy", icon: "lightbulb", taskId: task.id });
      s.steps.forEach((step, i) => {
        const n = i + 1;
        let icon = "circle-large-outline";
        if (task.verified || n < task.stepIndex) icon = "check";
        else if (n === task.stepIndex && task.status === "running") icon = "arrow-right";
        children.push({
          id: `${task.id}/step/${n}`,
          label: `${n}. ${step.intent}`,
          description: step.tools.join(", "),
          tooltip: `done when: ${step.check.kind}${step.check.description ? ` (${step.check.description})` : ""}`,
          icon,
          taskId: task.id,
        });
      });
      if (task.replan) {
        children.push({ id: `${task.id}/replan`, label: `replanned: ${task.replan}`, description: `plan ${task.plans}`, icon: "history", taskId: task.id });
      }
      if (s.budget) {
        children.push({
          id: `${task.id}/budget`,
          label: `budget: ${s.budget.turns} turns, ${s.budget.tokens} tokens`,
          icon: "dashboard",
          taskId: task.id,
        });
      }
    }
    return {
      id: task.id,
      label: task.title,
      description: taskDescription(task),
      tooltip: task.reason || task.title,
      icon: taskIcon(task),
      taskId: task.id,
      children,
    };
  });
}
