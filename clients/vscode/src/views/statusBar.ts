/** The status-bar item; it also keeps every text it showed, for the e2e test and bug reports. */

import * as vscode from "vscode";
import { StatusLine, statusLine, StatusView } from "../core/status";

export class StatusBar {
  private readonly item = vscode.window.createStatusBarItem("ornith.status", vscode.StatusBarAlignment.Left, 50);
  readonly history: string[] = [];

  constructor() {
    this.item.name = "Ornith";
    this.item.command = "ornith.client.backendStatus";
    this.item.show();
  }

  show(view: StatusView): StatusLine {
    const line = statusLine(view);
    this.item.text = line.text;
    this.item.tooltip = line.tooltip;
    this.item.backgroundColor = line.error ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
    this.item.command = (view.running?.length ?? 0) > 0 ? "ornith.client.showPlan" : "ornith.client.backendStatus";
    if (this.history[this.history.length - 1] !== line.text) {
      this.history.push(line.text);
      if (this.history.length > 200) this.history.shift();
    }
    return line;
  }

  get text(): string {
    return this.item.text;
  }

  dispose(): void {
    this.item.dispose();
  }
}
