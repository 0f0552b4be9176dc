/**
 * The language client: the server process (or TCP connection), its settings,
 * and the hooks that feed the task book.  Everything the user sees is drawn
 * elsewhere from what this reports.
 */

import * as net from "net";
import * as os from "os";
import * as vscode from "vscode";
import {
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  Middleware,
  ServerOptions,
  State,
  StreamInfo,
  TransportKind,
} from "vscode-languageclient/node";
import { Launch, serverLaunch, ServerConfig } from "./core/launch";
import { explicitValue, initializationOptions, SECTION, serverKeys } from "./core/settings";
import type { CommandResults } from "./wire";

export function workspaceRoot(): vscode.Uri | undefined {
  return vscode.workspace.workspaceFolders?.[0]?.uri;
}

/** The server's settings as the user set them (defaults are left to the server and ornith.toml). */
export function currentOptions(keys: readonly string[]): { ornith: Record<string, unknown> } {
  const config = vscode.workspace.getConfiguration(SECTION, workspaceRoot());
  return initializationOptions(keys, (key) => explicitValue(config.inspect(key)));
}

export function currentLaunch(): Launch {
  const config = vscode.workspace.getConfiguration(SECTION, workspaceRoot());
  const server: ServerConfig = {
    path: config.get<string | null>("server.path"),
    pythonPath: config.get<string | null>("server.pythonPath"),
    tcp: config.get<string | null>("server.tcp"),
  };
  return serverLaunch(server, workspaceRoot()?.fsPath, os.homedir());
}

function serverOptions(launch: Launch): ServerOptions {
  if (launch.kind === "tcp") {
    return () =>
      new Promise<StreamInfo>((resolve, reject) => {
        const socket = net.connect({ host: launch.host, port: launch.port });
        socket.once("connect", () => resolve({ reader: socket, writer: socket }));
        socket.once("error", reject);
      });
  }
  return {
    command: launch.command,
    args: launch.args,
    transport: TransportKind.stdio,
    options: { cwd: workspaceRoot()?.fsPath, env: process.env },
  };
}

export interface ClientHooks {
  middleware: Middleware;
  onFailed: (message: string) => void;
}

export function createClient(
  launch: Launch,
  keys: readonly string[],
  output: vscode.OutputChannel,
  hooks: ClientHooks,
): LanguageClient {
  const options: LanguageClientOptions = {
    documentSelector: [{ scheme: "file" }],
    initializationOptions: () => currentOptions(keys),
    outputChannel: output,
    middleware: hooks.middleware,
    initializationFailedHandler: (error) => {
      hooks.onFailed(error instanceof Error ? error.message : String(error));
      return false;
    },
  };
  return new LanguageClient("ornith", "Ornith", serverOptions(launch), options);
}

/** Send the current settings; the server restarts its backend itself when backend.* changed. */
export function pushSettings(client: LanguageClient, keys: readonly string[]): Promise<void> {
  return client.sendNotification(DidChangeConfigurationNotification.type, { settings: currentOptions(keys) });
}

/**
 * Run a server command directly (not through the VS Code command, so no
 * middleware side effects).  The result's type is the server's, from its wire schema.
 */
export async function serverCommand<K extends keyof CommandResults>(
  client: LanguageClient | undefined,
  command: K,
  ...args: unknown[]
): Promise<CommandResults[K]> {
  if (!client || client.state !== State.Running) throw new Error("the Ornith language server is not running");
  return (await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args })) as CommandResults[K];
}

export function keysOf(packageJSON: { contributes?: { configuration?: { properties?: Record<string, unknown> } } }): string[] {
  return serverKeys(packageJSON.contributes?.configuration?.properties ?? {});
}
