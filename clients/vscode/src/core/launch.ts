/**
 * How to reach the server: a TCP address, an executable, or a Python that has
 * the package.  Kept apart from vscode-languageclient so the choice is tested
 * on its own.
 */

export interface ServerConfig {
  path?: string | null;
  pythonPath?: string | null;
  tcp?: string | null;
}

export type Launch =
  | { kind: "tcp"; host: string; port: number }
  | { kind: "exec"; command: string; args: string[] };

export const DEFAULT_COMMAND = "ornith-lsp";

function given(value: string | null | undefined): string | undefined {
  const v = value?.trim();
  return v ? v : undefined;
}

/** `host:port`, `[::1]:port`, `:port` or `port`; the host defaults to 127.0.0.1. */
export function parseTcp(address: string): { host: string; port: number } {
  const text = address.trim();
  let host = "127.0.0.1";
  let portText = text;
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  if (bracketed) {
    host = bracketed[1];
    portText = bracketed[2];
  } else if (text.includes(":")) {
    const at = text.lastIndexOf(":");
    host = text.slice(0, at) || host;
    portText = text.slice(at + 1);
  }
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) {
    throw new Error(`ornith.server.tcp = '${address}': expected host:port with a port from 1 to 65535`);
  }
  return { host, port };
}

/**
 * `${workspaceFolder}` and `~` are expanded; a relative path with a slash in it
 * (`.venv/bin/ornith-lsp`) is taken from the workspace folder; a bare name is
 * left for PATH.
 */
export function resolvePath(path: string, root?: string, home?: string): string {
  let p = path;
  if (root) p = p.split("${workspaceFolder}").join(root);
  if (home && (p === "~" || p.startsWith("~/"))) p = home + p.slice(1);
  if (root && p.includes("/") && !p.startsWith("/") && !/^[A-Za-z]:[\\/]/.test(p)) {
    p = root.replace(/\/+$/, "") + "/" + p.replace(/^\.\//, "");
  }
  return p;
}

/** TCP wins when set; then an explicit executable; then a Python; then `ornith-lsp` on PATH. */
export function serverLaunch(config: ServerConfig, root?: string, home?: string): Launch {
  const tcp = given(config.tcp);
  if (tcp) return { kind: "tcp", ...parseTcp(tcp) };
  const path = given(config.path);
  if (path) return { kind: "exec", command: resolvePath(path, root, home), args: ["serve"] };
  const python = given(config.pythonPath);
  if (python) return { kind: "exec", command: resolvePath(python, root, home), args: ["-m", "ornith_lsp", "serve"] };
  return { kind: "exec", command: DEFAULT_COMMAND, args: ["serve"] };
}

export function describeLaunch(launch: Launch): string {
  return launch.kind === "tcp" ? `tcp://${launch.host}:${launch.port}` : [launch.command, ...launch.args].join(" ");
}
