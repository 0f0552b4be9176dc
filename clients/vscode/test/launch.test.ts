import assert from "node:assert/strict";
import { test } from "node:test";
import { describeLaunch, parseTcp, resolvePath, serverLaunch } from "../src/core/launch";

test("TCP wins over a path and a Python", () => {
  const launch = serverLaunch({ tcp: "127.0.0.1:2087", path: "/x/ornith-lsp", pythonPath: "/usr/bin/python3" });
  assert.deepEqual(launch, { kind: "tcp", host: "127.0.0.1", port: 2087 });
  assert.equal(describeLaunch(launch), "tcp://127.0.0.1:2087");
});

test("an executable is started with serve; a Python with -m ornith_lsp serve", () => {
  assert.deepEqual(serverLaunch({ path: "/opt/ornith/bin/ornith-lsp", pythonPath: "/usr/bin/python3" }), {
    kind: "exec",
    command: "/opt/ornith/bin/ornith-lsp",
    args: ["serve"],
  });
  assert.deepEqual(serverLaunch({ path: "", pythonPath: "/usr/bin/python3" }), {
    kind: "exec",
    command: "/usr/bin/python3",
    args: ["-m", "ornith_lsp", "serve"],
  });
});

test("nothing set: ornith-lsp from PATH", () => {
  assert.deepEqual(serverLaunch({}), { kind: "exec", command: "ornith-lsp", args: ["serve"] });
  assert.deepEqual(serverLaunch({ tcp: null, path: null, pythonPath: "  " }), { kind: "exec", command: "ornith-lsp", args: ["serve"] });
});

test("relative paths are taken from the workspace folder, bare names from PATH", () => {
  assert.equal(resolvePath(".venv/bin/ornith-lsp", "/work/repo"), "/work/repo/.venv/bin/ornith-lsp");
  assert.equal(resolvePath("./.venv/bin/python", "/work/repo/"), "/work/repo/.venv/bin/python");
  assert.equal(resolvePath("${workspaceFolder}/.venv/bin/python", "/work/repo"), "/work/repo/.venv/bin/python");
  assert.equal(resolvePath("~/venvs/o/bin/python", "/work/repo", "/home/me"), "/home/me/venvs/o/bin/python");
  assert.equal(resolvePath("python3", "/work/repo"), "python3");
  assert.equal(resolvePath("/abs/python", "/work/repo"), "/abs/python");
  assert.equal(serverLaunch({ pythonPath: ".venv/bin/python" }, "/r").kind === "exec" && (serverLaunch({ pythonPath: ".venv/bin/python" }, "/r") as { command: string }).command, "/r/.venv/bin/python");
});

test("TCP addresses: host:port, [v6]:port, :port and a bare port", () => {
  assert.deepEqual(parseTcp("gpu-box:9000"), { host: "gpu-box", port: 9000 });
  assert.deepEqual(parseTcp("[::1]:2087"), { host: "::1", port: 2087 });
  assert.deepEqual(parseTcp(":2087"), { host: "127.0.0.1", port: 2087 });
  assert.deepEqual(parseTcp("2087"), { host: "127.0.0.1", port: 2087 });
});

test("a bad TCP address is one clear error naming the setting", () => {
  for (const bad of ["host:", "host:http", "host:0", "host:70000", "x"]) {
    assert.throws(() => parseTcp(bad), /ornith\.server\.tcp = '.*': expected host:port/);
  }
});
