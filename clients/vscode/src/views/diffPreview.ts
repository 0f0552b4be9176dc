/**
 * The proposed fix as a `vscode.diff` preview before it is applied: left is
 * the text the fix was verified against, right is that text with the fix,
 * both as the server sends them in `ornith.showDiff` (so the client reads no
 * diff itself), shown as read-only virtual documents.
 */

import * as vscode from "vscode";
import type { FileText } from "../wire";

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

  private put(taskId: string, path: string, side: "before" | "after", text: string | null): vscode.Uri {
    const uri = vscode.Uri.from({ scheme: SCHEME, path: `/${path}`, query: `task=${encodeURIComponent(taskId)}&side=${side}` });
    this.texts.set(uri.toString(), text ?? "");
    this.changed.fire(uri);
    return uri;
  }

  /** Open one diff editor per changed file; returns what was opened. */
  async show(taskId: string, files: readonly FileText[]): Promise<Preview[]> {
    const previews: Preview[] = [];
    for (const file of files) {
      const left = this.put(taskId, file.path, "before", file.before);
      const right = this.put(taskId, file.path, "after", file.after);
      const what = file.before === null ? "created" : file.after === null ? "deleted" : "verified fix";
      await vscode.commands.executeCommand("vscode.diff", left, right, `${file.path} ↔ Ornith: ${what}`, {
        preview: files.length === 1,
      });
      previews.push({ path: file.path, left, right });
    }
    return previews;
  }

  dispose(): void {
    this.changed.dispose();
  }
}
