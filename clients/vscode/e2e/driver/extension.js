// Test only: drives the Ornith extension inside a real VS Code (code-server)
// the way a user would, and writes what happened to $OLSP_E2E_VERDICT as
// JSON for tests/test_vscode_client.py.  Does nothing when that is unset.
"use strict";

const fs = require("fs");
const vscode = require("vscode");

const VERDICT = process.env.OLSP_E2E_VERDICT;
const t0 = Date.now();

function write(file, data) {
  fs.writeFileSync(file + ".tmp", JSON.stringify(data, null, 2));
  fs.renameSync(file + ".tmp", file);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what, probe, timeoutMs, everyMs = 250) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

/** Tell the test where we are (it takes a screenshot) and wait for it, briefly. */
async function phase(name) {
  write(VERDICT + ".phase", { phase: name, t: Date.now() - t0 });
  const go = `${VERDICT}.${name}.go`;
  await until(`the test to finish with phase ${name}`, () => fs.existsSync(go), 30000, 100).catch(() => undefined);
}

function codeActions(uri, range) {
  return vscode.commands.executeCommand("vscode.executeCodeActionProvider", uri, range);
}

async function drive(verdict) {
  const step = (name, data = {}) => verdict.steps.push({ name, t: Date.now() - t0, ...data });
  const folder = vscode.workspace.workspaceFolders[0].uri;
  const calcUri = vscode.Uri.joinPath(folder, "calc.py");
  const testUri = vscode.Uri.joinPath(folder, "test_calc.py");

  const ext = vscode.extensions.getExtension("ornith.ornith-lsp");
  if (!ext) throw new Error("the Ornith extension is not installed");
  const api = await ext.activate();
  step("activated");

  const calc = await vscode.workspace.openTextDocument(calcUri);
  await vscode.window.showTextDocument(calc, { preview: false });
  const tests = await vscode.workspace.openTextDocument(testUri);
  await vscode.window.showTextDocument(tests, { preview: false });
  await vscode.commands.executeCommand("ornith.plan.focus").then(undefined, () => undefined);
  verdict.calcBefore = calc.getText();

  await until("the backend to be ready", () => api.backend() === "ready", 90000);
  verdict.statusWhenReady = api.statusText();
  step("backend ready", { status: verdict.statusWhenReady });

  verdict.runTests = await vscode.commands.executeCommand("ornith.client.runTests");
  const diagnostics = await until(
    "an ornith-tests diagnostic on test_calc.py",
    () => {
      const found = vscode.languages.getDiagnostics(testUri).filter((d) => d.source === "ornith-tests");
      return found.length ? found : null;
    },
    60000,
  );
  verdict.diagnostics = diagnostics.map((d) => ({ message: d.message, line: d.range.start.line, source: d.source }));
  step("diagnostic", { count: diagnostics.length });

  const range = diagnostics[0].range;
  const offered = (await codeActions(testUri, range)) || [];
  verdict.actionsBefore = offered.map((a) => a.title);
  const fix = offered.find((a) => a.title.startsWith("Ornith: fix") && a.command);
  if (!fix) throw new Error(`no 'Ornith: fix' code action among ${JSON.stringify(verdict.actionsBefore)}`);
  verdict.fixStarted = await vscode.commands.executeCommand(fix.command.command, ...(fix.command.arguments || []));
  step("fix started", { result: verdict.fixStarted });

  const running = new Set();
  const apply = await until(
    "the verified fix's code action",
    async () => {
      const actions = (await codeActions(testUri, range)) || [];
      for (const a of actions) if (a.title.startsWith("Ornith: fixing")) running.add(a.title);
      for (const t of api.tasks()) if (t.step) running.add(t.step);
      return actions.find((a) => a.title.startsWith("Ornith: apply verified fix") && a.edit);
    },
    150000,
    300,
  );
  verdict.whileRunning = [...running];
  verdict.applyTitle = apply.title;
  const task = api.tasks().find((t) => t.id === verdict.fixStarted.taskId) || api.tasks()[0];
  await until("ornith/fixDone", () => api.tasks().find((t) => t.id === task.id && t.status !== "running"), 30000);
  verdict.task = api.tasks().find((t) => t.id === task.id);
  verdict.planTree = api.planTree();
  step("verified", { title: apply.title });

  const previews = await vscode.commands.executeCommand("ornith.client.showDiff", task.id);
  if (!previews || previews.length === 0) throw new Error("the diff preview opened nothing");
  const left = await vscode.workspace.openTextDocument(previews[0].left);
  const right = await vscode.workspace.openTextDocument(previews[0].right);
  verdict.preview = { path: previews[0].path, left: previews[0].left.toString(), before: left.getText(), after: right.getText() };
  verdict.statusAtPreview = api.statusText();
  step("preview");
  await phase("preview");

  verdict.applied = await vscode.workspace.applyEdit(apply.edit);
  verdict.calcAfter = calc.getText();
  verdict.calcDirtyAfterApply = calc.isDirty;
  await calc.save();
  step("applied", { applied: verdict.applied });

  verdict.runTestsAfter = await vscode.commands.executeCommand("ornith.client.runTests");
  verdict.shownPlan = await vscode.commands.executeCommand("ornith.client.showPlan", task.id);
  verdict.backendStatus = await vscode.commands.executeCommand("ornith.client.backendStatus");

  // a changed setting reaches the server (didChangeConfiguration), which restarts its backend
  await vscode.workspace.getConfiguration("ornith").update("backend.model", "scripted-2", vscode.ConfigurationTarget.Workspace);
  const changed = await until(
    "the server to pick up ornith.backend.model",
    async () => {
      const status = await vscode.commands.executeCommand("ornith.client.backendStatus");
      return status && status.model === "scripted-2" && status.state === "ready" ? status : null;
    },
    30000,
    500,
  );
  verdict.modelAfterChange = changed.model;
  step("setting changed");
  verdict.statusHistory = api.statusHistory();
  verdict.ok = true;
}

async function run() {
  const verdict = { ok: false, steps: [], error: null };
  try {
    await drive(verdict);
  } catch (err) {
    verdict.error = String((err && err.stack) || err);
  }
  try {
    const api = vscode.extensions.getExtension("ornith.ornith-lsp")?.exports;
    if (api && !verdict.statusHistory) verdict.statusHistory = api.statusHistory();
    if (api && !verdict.planTree) verdict.planTree = api.planTree();
  } catch {
    // the verdict is written regardless
  }
  verdict.elapsedMs = Date.now() - t0;
  write(VERDICT, verdict);
}

function activate() {
  if (VERDICT) void run();
}

module.exports = { activate, deactivate() {} };
