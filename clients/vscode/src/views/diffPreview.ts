/**
 * The proposed fix as a `vscode.diff` preview before it is applied: left is
 * the file as the editor has it now, right is a read-only virtual document
 * with the fix's diff applied to that text.
 */

import * as vscode from "vscode";
import { applyFileDiff, DiffError, parseDiff, pathOf, stat } from "../core/diff";

export const SCHEME = "ornith-fix";

export interface Preview {
  path: string;
  left: vscode.Uri;
  right: vscode.Uri;
}

export class DiffPreview implements vscode.TextDocumentContentProvider {
  private readonly texts = new Map<string, string>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.texts.get(uri.toString()) ?? "";
  }

  private put(uri: vscode.Uri, text: string): void {
    this.texts.set(uri.toString(), text);
    this.changed.fire(uri);
  }

  /** Open one diff editor per changed file; returns what was opened. */
  async show(root: vscode.Uri, taskId: string, diff: string): Promise<Preview[]> {
    const files = parseDiff(diff);
    if (files.length === 0) throw new DiffError("the fix changes nothing");
    const { added, removed } = stat(diff);
    const previews: Preview[] = [];
    for (const file of files) {
      const path = pathOf(file);
      const fileUri = vscode.Uri.joinPath(root, path);
      const query = `task=${encodeURIComponent(taskId)}`;
      let current = "";
      let left = fileUri;
      if (file.oldPath === null) {
        left = vscode.Uri.from({ scheme: SCHEME, path: `/${path}`, query: `${query}&side=before` });
        this.put(left, "");
      } else {
        current = (await vscode.workspace.openTextDocument(fileUri)).getText();
      }
      const right = vscode.Uri.from({ scheme: SCHEME, path: `/${path}`, query: `${query}&side=after` });
      this.put(right, applyFileDiff(current, file));
      await vscode.commands.executeCommand(
        "vscode.diff",
        left,
        right,
        `${path} ↔ Ornith fix (+${added} -${removed})`,
        { preview: files.length === 1 },
      );
      previews.push({ path, left, right });
    }
    return previews;
  }

  dispose(): void {
    this.changed.dispose();
  }
}
