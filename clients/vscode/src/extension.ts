/**
 * Ornith for VS Code: starts (or connects to) `ornith-lsp`, shows the backend
 * and the running fix in the status bar, the fix's plan in a tree, and the
 * proposed diff as a preview before it is applied.  Code actions ("Ornith:
 * fix …", "Ornith: apply verified fix") come from the server through
 * vscode-languageclient's lightbulb support; this file only wires things.
 */

import * as vscode from "vscode";
import { LanguageClient, State } from "vscode-languageclient/node";
import { describeLaunch } from "./core/launch";
import { needsRestart } from "./core/settings";
import { BackendState, backendState } from "./core/status";
import { candidates, TaskBook, TaskView, TreeNode } from "./core/tasks";
import { createClient, currentLaunch, keysOf, pushSettings, serverCommand } from "./server";
import { DiffPreview, Preview, SCHEME } from "./views/diffPreview";
import { PlanView } from "./views/planView";
import { StatusBar } from "./views/statusBar";
import type { BackendStatus, FixStarted, Notifications, ShowResult, Task } from "./wire";

/** What `activate` returns: for other extensions and for the end-to-end test's driver. */
export interface OrnithApi {
  client(): LanguageClient | undefined;
  statusText(): string;
  statusHistory(): string[];
  backend(): BackendState;
  tasks(): TaskView[];
  planTree(): TreeNode[];
  lastPreview(): Preview[];
}

class Ornith implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private readonly output = vscode.window.createOutputChannel("Ornith");
  private readonly book = new TaskBook();
  private readonly status = new StatusBar();
  private readonly plan = new PlanView(this.book);
  private readonly preview = new DiffPreview();
  private readonly keys: string[];
  private backend: BackendState = "starting";
  private backendDetail = "";
  private backendTimer: NodeJS.Timeout | undefined;
  private previews: Preview[] = [];
  private readonly disposables: vscode.Disposable[] = [];

  constructor(context: vscode.ExtensionContext) {
    this.keys = keysOf(context.extension.packageJSON);
    this.disposables.push(
      this.output,
      this.status,
      this.plan,
      this.preview,
      vscode.window.registerTreeDataProvider("ornith.plan", this.plan),
      vscode.workspace.registerTextDocumentContentProvider(SCHEME, this.preview),
      vscode.workspace.onDidChangeConfiguration((e) => this.configurationChanged(e)),
    );
    const commands: Record<string, (...args: any[]) => unknown> = {
      "ornith.client.fixAtCursor": () => this.fixAtCursor(),
      "ornith.client.fixFailingTests": () => this.fixFailingTests(),
      "ornith.client.runTests": () => this.runTests(),
      "ornith.client.cancel": (id?: string) => this.cancel(id),
      "ornith.client.showPlan": (id?: string) => this.showPlan(id),
      "ornith.client.showDiff": (id?: string) => this.showDiff(id),
      "ornith.client.apply": (id?: string) => this.apply(id),
      "ornith.client.rollback": (id?: string) => this.rollback(id),
      "ornith.client.backendStatus": () => this.showBackendStatus(),
      "ornith.client.openBackendLog": () => this.openBackendLog(),
      "ornith.client.restartServer": () => this.restart(),
    };
    for (const [name, handler] of Object.entries(commands)) {
      this.disposables.push(vscode.commands.registerCommand(name, (...args) => this.guard(handler, ...args)));
    }
    this.redraw();
  }

  api(): OrnithApi {
    return {
      client: () => this.client,
      statusText: () => this.status.text,
      statusHistory: () => [...this.status.history],
      backend: () => this.backend,
      tasks: () => this.book.all(),
      planTree: () => this.plan.nodes(),
      lastPreview: () => this.previews,
    };
  }

  /** Errors from commands become one message, not an unhandled rejection. */
  private async guard(handler: (...args: any[]) => unknown, ...args: unknown[]): Promise<unknown> {
    try {
      return await handler(...args);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.output.appendLine(`[client] ${message}`);
      void vscode.window.showErrorMessage(`Ornith: ${message}`);
      return undefined;
    }
  }

  // -- the server -------------------------------------------------------------------
  async start(): Promise<void> {
    let launch;
    try {
      launch = currentLaunch();
    } catch (err) {
      this.setBackend("error", err instanceof Error ? err.message : String(err));
      return;
    }
    this.output.appendLine(`[client] starting ${describeLaunch(launch)}`);
    this.setBackend("starting", "");
    const client = createClient(launch, this.keys, this.output, {
      middleware: { executeCommand: (command, args, next) => this.intercept(command, args, next) },
      onFailed: (message) => this.setBackend("error", message),
    });
    this.client = client;
    client.onDidChangeState((e) => {
      if (this.client !== client) return;
      if (e.newState === State.Stopped) this.setBackend("error", "the language server stopped");
      else if (e.newState === State.Running) this.pollBackend(500); // also after vscode-languageclient restarted it
    });
    // the fix's progress comes to us: its plan, each step, its end
    client.onNotification("ornith/plan", (n: Notifications["ornith/plan"]) => {
      this.book.planned(n);
      this.redraw();
    });
    client.onNotification("ornith/step", (n: Notifications["ornith/step"]) => {
      this.book.stepped(n);
      this.redraw();
    });
    client.onNotification("ornith/fixDone", (n: Notifications["ornith/fixDone"]) => {
      this.book.done(n);
      this.redraw();
    });
    try {
      await client.start();
    } catch (err) {
      this.setBackend("error", `could not start ${describeLaunch(launch)}: ${err instanceof Error ? err.message : err}`);
    }
  }

  async stop(): Promise<void> {
    clearTimeout(this.backendTimer);
    const client = this.client;
    this.client = undefined;
    if (client && client.state !== State.Stopped) await client.stop(5000).catch(() => undefined);
  }

  private async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  private configurationChanged(e: vscode.ConfigurationChangeEvent): void {
    if (!e.affectsConfiguration("ornith")) return;
    if (needsRestart((s) => e.affectsConfiguration(s))) {
      void this.guard(() => this.restart());
      return;
    }
    if (this.client?.state === State.Running) {
      void pushSettings(this.client, this.keys).then(() => this.pollBackend(1000));
    }
  }

  /** Server commands run from code actions and code lenses pass through here. */
  private async intercept(command: string, args: any[], next: (command: string, args: any[]) => any): Promise<unknown> {
    const result = await next(command, args);
    if (command === "ornith.fix") {
      const task = args[0] as Partial<Task> | undefined;
      this.fixStarted(result as FixStarted, task?.title);
    } else if (command === "ornith.showDiff" && result) {
      await this.openPreview(result as ShowResult);
    }
    return result;
  }

  private fixStarted(result: FixStarted | undefined, title?: string): void {
    if (!result?.taskId) return;
    if (result.status === "refused") {
      void vscode.window.showWarningMessage(`Ornith: fix refused: ${result.reason}`);
      return;
    }
    this.book.started(result.taskId, title);
    this.redraw();
  }

  // -- polling ----------------------------------------------------------------------
  private pollBackend(delay: number): void {
    clearTimeout(this.backendTimer);
    this.backendTimer = setTimeout(async () => {
      if (!this.client || this.client.state !== State.Running) return;
      try {
        const status = await serverCommand(this.client, "ornith.backendStatus");
        this.setBackend(backendState(status), status.error ?? [status.kind, status.model].filter(Boolean).join(" "));
      } catch (err) {
        this.setBackend("error", err instanceof Error ? err.message : String(err));
      }
      this.pollBackend(this.backend === "starting" ? 1000 : 10000);
    }, delay);
  }

  private setBackend(state: BackendState, detail: string): void {
    this.backend = state;
    this.backendDetail = detail;
    this.redraw();
  }

  private redraw(): void {
    this.status.show({
      backend: this.backend,
      detail: this.backendDetail,
      running: this.book.running().map((t) => ({ title: t.title, step: t.step })),
      readyFixes: this.book.verified().length,
    });
    this.plan.refresh();
  }

  // -- commands ---------------------------------------------------------------------
  private async pick(command: Parameters<typeof candidates>[1], id: string | undefined, none: string): Promise<TaskView | undefined> {
    if (id) return this.book.get(id) ?? { ...transient, id, title: id };
    const tasks = candidates(this.book, command);
    if (tasks.length === 0) {
      void vscode.window.showInformationMessage(`Ornith: ${none}`);
      return undefined;
    }
    if (tasks.length === 1) return tasks[0];
    const chosen = await vscode.window.showQuickPick(
      tasks.map((t) => ({ label: t.title, description: t.status, task: t })),
      { placeHolder: "Which fix?" },
    );
    return chosen?.task;
  }

  private async fixAtCursor(): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    if (!editor) throw new Error("open a file and put the cursor on a problem first");
    const at = editor.selection.active;
    const diagnostics = vscode.languages.getDiagnostics(editor.document.uri).filter((d) => d.range.contains(at) || d.range.start.line === at.line);
    if (diagnostics.length === 0) {
      void vscode.window.showInformationMessage("Ornith: no problem at the cursor. 'Ornith: Run Tests' turns failing tests into problems.");
      return;
    }
    const actions =
      (await vscode.commands.executeCommand<(vscode.CodeAction | vscode.Command)[]>(
        "vscode.executeCodeActionProvider",
        editor.document.uri,
        diagnostics[0].range,
      )) ?? [];
    const commandOf = (a: vscode.CodeAction | vscode.Command): vscode.Command | undefined =>
      "title" in a && typeof (a as vscode.Command).command === "string" ? (a as vscode.Command) : (a as vscode.CodeAction).command;
    const fix = actions.find((a) => commandOf(a)?.command === "ornith.fix");
    if (!fix) {
      const ready = actions.find((a) => a.title.startsWith("Ornith: apply verified fix"));
      void vscode.window.showInformationMessage(
        ready ? "Ornith: a verified fix is ready here: apply it from the lightbulb." : "Ornith: nothing to fix here (is a fix already running?)",
      );
      return;
    }
    const command = commandOf(fix)!;
    await vscode.commands.executeCommand(command.command, ...(command.arguments ?? []));
  }

  private async runTests(): Promise<unknown> {
    const summary = await serverCommand(this.client, "ornith.runTests");
    const text = summary.timedOut
      ? "the test run timed out"
      : `${summary.failed} failing, ${summary.passed} passing${summary.failed ? " (see Problems; fix from the lightbulb)" : ""}`;
    void vscode.window.showInformationMessage(`Ornith: ${text}`);
    return summary;
  }

  private async fixFailingTests(): Promise<unknown> {
    const summary = await serverCommand(this.client, "ornith.fixTests");
    const titles = new Map(summary.tasks.map((t) => [t.id, t.title]));
    for (const started of summary.started) this.fixStarted(started, started.taskId ? titles.get(started.taskId) : undefined);
    void vscode.window.showInformationMessage(
      summary.failed ? `Ornith: fixing ${summary.failed} failing test${summary.failed > 1 ? "s" : ""}` : "Ornith: no failing tests",
    );
    return summary;
  }

  private async cancel(id?: string): Promise<unknown> {
    const running = this.book.running();
    if (!id && running.length === 0) {
      void vscode.window.showInformationMessage("Ornith: no fix is running");
      return undefined;
    }
    return serverCommand(this.client, "ornith.cancel", ...(id ? [id] : running.length === 1 ? [running[0].id] : []));
  }

  private async showPlan(id?: string): Promise<unknown> {
    const task = await this.pick("showPlan", id, "no fix has been started yet");
    if (!task) return undefined;
    const shown = await serverCommand(this.client, "ornith.showPlan", task.id);
    this.book.shown(shown);
    this.redraw();
    await vscode.commands.executeCommand("ornith.plan.focus");
    return shown;
  }

  private async showDiff(id?: string): Promise<Preview[] | undefined> {
    const task = await this.pick("showDiff", id, "no verified fix yet");
    if (!task) return undefined;
    return this.openPreview(await serverCommand(this.client, "ornith.showDiff", task.id));
  }

  /** The server sends each file before and after the verified fix: nothing to parse or apply here. */
  private async openPreview(shown: ShowResult): Promise<Preview[]> {
    if (shown.files.length === 0) {
      const why = shown.verified ? "the fix changes no text file" : `no verified fix yet (${shown.status}${shown.reason ? `: ${shown.reason}` : ""})`;
      throw new Error(`nothing to preview: ${why}`);
    }
    this.previews = await this.preview.show(shown.taskId, shown.files);
    return this.previews;
  }

  private async apply(id?: string): Promise<unknown> {
    const task = await this.pick("apply", id, "no verified fix to apply");
    if (!task) return undefined;
    const result = await serverCommand(this.client, "ornith.apply", task.id);
    if (!result.applied) throw new Error(`the fix was not applied: ${result.reason || "the editor refused the edit"}`);
    this.book.markApplied(task.id);
    this.redraw();
    return result;
  }

  private async rollback(id?: string): Promise<unknown> {
    const task = await this.pick("rollback", id, "no fix to roll back");
    if (!task) return undefined;
    const ok = await vscode.window.showWarningMessage(
      `Put the files that '${task.title}' touched back as they were when it started?`,
      { modal: true },
      "Roll Back",
    );
    if (ok !== "Roll Back") return undefined;
    const done = await serverCommand(this.client, "ornith.rollback", task.id);
    if (!done.rolledBack) throw new Error(`not rolled back: ${done.reason}`);
    void vscode.window.showInformationMessage(
      `Ornith: rolled back (${done.restored.length} restored, ${done.removed.length} removed)`,
    );
    return done;
  }

  private async showBackendStatus(): Promise<unknown> {
    const status: BackendStatus = await serverCommand(this.client, "ornith.backendStatus");
    this.setBackend(backendState(status), status.error ?? [status.kind, status.model].filter(Boolean).join(" "));
    const parts = [status.kind, status.model, status.model_size, status.context_length ? `context ${status.context_length}` : ""];
    const line = `${parts.filter(Boolean).join(", ")} — ${status.state}, health ${status.health}${status.error ? `: ${status.error}` : ""}`;
    void vscode.window.showInformationMessage(`Ornith backend: ${line}`, "Open Backend Log").then((choice) => {
      if (choice) void vscode.commands.executeCommand("ornith.client.openBackendLog");
    });
    return status;
  }

  private async openBackendLog(): Promise<void> {
    const status = await serverCommand(this.client, "ornith.backendStatus").catch(() => undefined);
    if (status?.log_path) {
      const doc = await vscode.workspace.openTextDocument(vscode.Uri.file(status.log_path));
      await vscode.window.showTextDocument(doc, { preview: true });
      return;
    }
    this.output.show(true);
    void vscode.window.showInformationMessage("Ornith: this backend keeps no log file here; the server's own output is shown.");
  }

  dispose(): void {
    void this.stop();
    for (const d of this.disposables) d.dispose();
  }
}

/** A task the server knows and this window does not (e.g. started from another client). */
const transient: TaskView = { id: "", title: "", status: "unknown", step: "", stepIndex: 0, plans: 0, verified: false, reason: "", applied: false, order: -1 };

let instance: Ornith | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<OrnithApi> {
  instance = new Ornith(context);
  context.subscriptions.push(instance);
  void instance.start();
  return instance.api();
}

export async function deactivate(): Promise<void> {
  await instance?.stop();
  instance = undefined;
}
