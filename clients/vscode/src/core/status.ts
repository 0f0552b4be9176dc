/**
 * The status-bar line: the backend's state, or the running task's step.
 *
 * The server's `ornith.backendStatus` says `starting`, `restarting`, `ready`,
 * `failed` or `stopped`; the user sees three words that matter (starting /
 * ready / error) and, while a fix runs, which step of its plan it is on.
 */

import type { BackendStatus } from "../wire";

export type BackendState = "starting" | "ready" | "error" | "stopped";

export function backendState(status: Partial<Pick<BackendStatus, "state" | "health" | "error">> | undefined | null): BackendState {
  switch (status?.state) {
    case "ready":
      return "ready";
    case "starting":
    case "restarting":
      return "starting";
    case "failed":
      return "error";
    case "stopped":
      return status?.error ? "error" : "stopped";
    default:
      return "starting";
  }
}

export interface RunningTask {
  title: string;
  step: string;
}

export interface StatusView {
  backend: BackendState;
  /** Why the backend is in error, or which backend is ready. */
  detail?: string;
  running?: RunningTask[];
  /** Verified fixes waiting to be applied. */
  readyFixes?: number;
}

export interface StatusLine {
  text: string;
  tooltip: string;
  /** Shown with the error background. */
  error: boolean;
}

const ICON: Record<BackendState, string> = {
  starting: "$(sync~spin)",
  ready: "$(check)",
  error: "$(error)",
  stopped: "$(circle-slash)",
};

function clip(text: string, max = 48): string {
  return text.length <= max ? text : text.slice(0, max - 1) + "…";
}

export function statusLine(view: StatusView): StatusLine {
  const running = view.running ?? [];
  const backend = `backend ${view.backend}${view.detail ? `: ${view.detail}` : ""}`;
  if (running.length > 0) {
    const first = running[0];
    const more = running.length > 1 ? ` (+${running.length - 1})` : "";
    return {
      text: `$(sync~spin) Ornith: ${clip(first.step || "planning…")}${more}`,
      tooltip: running.map((t) => `${t.title}: ${t.step || "planning…"}`).join("\n") + `\n${backend}`,
      error: false,
    };
  }
  if (view.backend === "ready" && (view.readyFixes ?? 0) > 0) {
    const n = view.readyFixes ?? 0;
    return {
      text: `$(lightbulb) Ornith: ready, ${n} verified fix${n > 1 ? "es" : ""}`,
      tooltip: `${backend}\nApply from the lightbulb or 'Ornith: Apply Verified Fix'`,
      error: false,
    };
  }
  return { text: `${ICON[view.backend]} Ornith: ${view.backend}`, tooltip: backend, error: view.backend === "error" };
}
