/** The scaffold of each fix (from `ornith/plan`) as a tree in the Explorer. */

import * as vscode from "vscode";
import { planTree, TaskBook, TreeNode } from "../core/tasks";

export class PlanView implements vscode.TreeDataProvider<TreeNode> {
  private readonly changed = new vscode.EventEmitter<TreeNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;

  constructor(private readonly book: TaskBook) {}

  refresh(): void {
    this.changed.fire(undefined);
  }

  nodes(): TreeNode[] {
    return planTree(this.book.all());
  }

  getChildren(node?: TreeNode): TreeNode[] {
    return node ? node.children ?? [] : this.nodes();
  }

  getTreeItem(node: TreeNode): vscode.TreeItem {
    // a task's node is expandable from the start, so it opens by itself when its plan arrives
    const expandable = node.id === node.taskId || (node.children?.length ?? 0) > 0;
    const item = new vscode.TreeItem(
      node.label,
      expandable ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.None,
    );
    item.id = node.id;
    item.description = node.description;
    item.tooltip = node.tooltip;
    if (node.icon) item.iconPath = new vscode.ThemeIcon(node.icon);
    if (node.taskId && node.id === node.taskId) {
      item.contextValue = "ornith.task";
      item.command = { title: "Show Diff", command: "ornith.client.showDiff", arguments: [node.taskId] };
    }
    return item;
  }

  dispose(): void {
    this.changed.dispose();
  }
}
