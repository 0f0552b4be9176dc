--- The :Ornith* commands: thin wrappers over the server's workspace commands
--- and code actions.
local state = require("ornith.state")
local ui = require("ornith.ui")

local M = {}

local PLAN_BUF = "ornith://plan"
local DIFF_BUF = "ornith://diff"

local function notify(message, level)
  vim.notify("Ornith: " .. message, level or vim.log.levels.INFO)
end

local function present(value)
  return value ~= nil and value ~= vim.NIL and value ~= ""
end

--- The ornith client attached to `bufnr`, else any running ornith client.
function M.client(bufnr)
  local clients = vim.lsp.get_clients({ name = "ornith", bufnr = bufnr or 0 })
  if #clients == 0 then
    clients = vim.lsp.get_clients({ name = "ornith" })
  end
  if #clients == 0 then
    notify("no ornith-lsp client is running; open a Python file in a project (see :checkhealth ornith)",
      vim.log.levels.ERROR)
    return nil
  end
  return clients[1]
end

--- workspace/executeCommand on the ornith client; `callback(result, client)` on success.
function M.execute(command, arguments, callback)
  local bufnr = vim.api.nvim_get_current_buf()
  local client = M.client(bufnr)
  if not client then
    return
  end
  client:request("workspace/executeCommand", { command = command, arguments = arguments or {} },
    function(err, result)
      if err then
        notify(("%s failed: %s"):format(command, err.message or vim.inspect(err)), vim.log.levels.ERROR)
      elseif callback then
        callback(result, client)
      end
    end, bufnr)
end

local function task_id(arg)
  local id = present(arg) and arg or state.latest
  if not id then
    notify("no fix yet: run :OrnithFix on a diagnostic or :OrnithFixTests", vim.log.levels.WARN)
  end
  return id
end

local function remember_started(started, titles)
  for _, s in ipairs(started or {}) do
    if s.taskId then
      state.touch(s.taskId, { status = s.status, title = titles[s.taskId] })
    end
  end
end

local function titles_of(tasks)
  local titles = {}
  for _, t in ipairs(tasks or {}) do
    if t.id then
      titles[t.id] = t.title
    end
  end
  return titles
end

-- :OrnithFix ------------------------------------------------------------------------

--- The Ornith action worth running: a verified fix to apply, else a fix to start,
--- else a disabled one ("fixing…") so the user hears why nothing happens.
function M.pick_action(actions)
  local best, best_rank
  for _, action in ipairs(actions or {}) do
    local title = type(action.title) == "string" and action.title or ""
    if title:match("^Ornith:") and action.kind == "quickfix" then
      local rank = action.disabled and 3 or action.edit and 1 or action.command and 2 or 4
      if not best_rank or rank < best_rank then
        best, best_rank = action, rank
      end
    end
  end
  return best
end

--- The real LSP diagnostics on a line: vim.diagnostic keeps the original in
--- user_data.lsp, and the server needs that (range, source, data) back verbatim.
function M.line_diagnostics(bufnr, lnum)
  local out = {}
  for _, d in ipairs(vim.diagnostic.get(bufnr, { lnum = lnum })) do
    if d.user_data and d.user_data.lsp then
      out[#out + 1] = d.user_data.lsp
    end
  end
  return out
end

--- Ask for code actions on the cursor line's diagnostics; `callback(actions, client)`.
function M.code_actions(bufnr, lnum, callback)
  local clients = vim.lsp.get_clients({ name = "ornith", bufnr = bufnr })
  if #clients == 0 then
    notify("this buffer has no ornith-lsp client", vim.log.levels.ERROR)
    return
  end
  local client = clients[1]
  local diagnostics = M.line_diagnostics(bufnr, lnum)
  if #diagnostics == 0 then
    notify("no diagnostic on this line (run :OrnithRunTests or :OrnithFixTests first)", vim.log.levels.WARN)
    return
  end
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    range = { start = { line = lnum, character = 0 }, ["end"] = { line = lnum + 1, character = 0 } },
    context = { diagnostics = diagnostics, triggerKind = 1 },
  }
  client:request("textDocument/codeAction", params, function(err, actions)
    if err then
      notify("code actions failed: " .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
      return
    end
    callback(actions or {}, client)
  end, bufnr)
end

function M.run_action(action, client, bufnr)
  if action.disabled then
    notify(("%s (%s)"):format(action.title:gsub("^Ornith:%s*", ""), action.disabled.reason or "disabled"))
    return
  end
  if action.edit then
    vim.lsp.util.apply_workspace_edit(action.edit, client.offset_encoding)
    notify("applied the verified fix; :write to save it")
  end
  local command = action.command
  if type(command) == "table" and command.command then
    client:request("workspace/executeCommand", { command = command.command, arguments = command.arguments or {} },
      function(err, result)
        if err then
          notify(("%s failed: %s"):format(command.command, err.message or vim.inspect(err)), vim.log.levels.ERROR)
        elseif type(result) == "table" and result.taskId then
          state.touch(result.taskId, { status = result.status, title = action.title })
          notify(("%s: %s"):format(action.title:gsub("^Ornith:%s*", ""), result.status))
        end
      end, bufnr)
  end
end

function M.fix()
  local bufnr = vim.api.nvim_get_current_buf()
  local lnum = vim.api.nvim_win_get_cursor(0)[1] - 1
  M.code_actions(bufnr, lnum, function(actions, client)
    local action = M.pick_action(actions)
    if not action then
      notify("no Ornith action for this line", vim.log.levels.WARN)
      return
    end
    M.run_action(action, client, bufnr)
  end)
end

-- tests --------------------------------------------------------------------------------

local function summary(result)
  local text = ("tests: %d passed, %d failed"):format(result.passed or 0, result.failed or 0)
  if result.timedOut then
    text = text .. " (timed out)"
  end
  return text
end

function M.run_tests()
  notify("running tests…")
  M.execute("ornith.runTests", {}, function(result)
    notify(summary(result), (result.failed or 0) > 0 and vim.log.levels.WARN or vim.log.levels.INFO)
  end)
end

function M.fix_tests()
  notify("running tests…")
  M.execute("ornith.fixTests", {}, function(result)
    remember_started(result.started, titles_of(result.tasks))
    local started = #(result.started or {})
    notify(summary(result) .. (started > 0 and ("; fixing %d"):format(started) or ""))
  end)
end

-- tasks ----------------------------------------------------------------------------------

function M.cancel(arg)
  M.execute("ornith.cancel", present(arg) and { arg } or {}, function(result)
    local ids = result.cancelled or {}
    notify(#ids > 0 and ("cancelled %s"):format(table.concat(ids, ", ")) or "nothing to cancel")
  end)
end

function M.apply(arg)
  local id = task_id(arg)
  if not id then
    return
  end
  M.execute("ornith.apply", { id }, function(result)
    if result.applied then
      notify("applied the verified fix; :write to save it")
    else
      notify("not applied: " .. (result.reason or "?"), vim.log.levels.WARN)
    end
  end)
end

function M.rollback(arg)
  local id = task_id(arg)
  if not id then
    return
  end
  M.execute("ornith.rollback", { id }, function(result)
    if result.rolledBack then
      vim.cmd.checktime()
      notify(("rolled back: restored %s"):format(table.concat(result.restored or {}, ", ")))
    else
      notify("not rolled back: " .. (result.reason or "?"), vim.log.levels.WARN)
    end
  end)
end

-- views ----------------------------------------------------------------------------------

function M.status()
  M.execute("ornith.backendStatus", {}, function(result)
    ui.float(ui.status_lines(result), " ornith backend ")
  end)
end

--- Re-draw the plan buffer from what the notifications told us, if it exists.
function M.refresh_plan()
  local id = state.latest
  if id and vim.fn.bufnr(PLAN_BUF) ~= -1 then
    ui.scratch(PLAN_BUF, ui.plan_lines(id, state.task(id)), { show = false })
  end
end

function M.plan(arg)
  local id = task_id(arg)
  if not id then
    return
  end
  M.execute("ornith.showPlan", { id }, function(result)
    local info = state.task(id)
    for _, key in ipairs({ "title", "status", "step", "reason" }) do
      if present(result[key]) and result[key] ~= "unknown" then
        info[key] = result[key]
      end
    end
    if present(result.scaffold) then
      info.scaffold = result.scaffold
    end
    state.latest = id
    ui.scratch(PLAN_BUF, ui.plan_lines(id, info), { filetype = "ornithplan" })
  end)
end

function M.diff(arg)
  local id = task_id(arg)
  if not id then
    return
  end
  M.execute("ornith.showDiff", { id }, function(result)
    local lines
    if present(result.diff) then
      lines = vim.split(result.diff, "\n", { plain = true })
      if lines[#lines] == "" then
        table.remove(lines)
      end
    else
      lines = { ("# no diff for task %s (status: %s)"):format(id, result.status or "?") }
    end
    ui.scratch(DIFF_BUF, lines, { filetype = "diff" })
  end)
end

-- user commands ------------------------------------------------------------------------------

local function complete_ids()
  return state.ids()
end

M.specs = {
  OrnithFix = { M.fix, "Run the Ornith code action for the diagnostic on the cursor line" },
  OrnithRunTests = { M.run_tests, "Run the tests; failures become diagnostics" },
  OrnithFixTests = { M.fix_tests, "Run the tests and start a fix for every failure" },
  OrnithCancel = { M.cancel, "Cancel a running fix (all fixes without an argument)", true },
  OrnithStatus = { M.status, "Show the model backend's status" },
  OrnithPlan = { M.plan, "Show the plan (scaffold) of the latest or given fix", true },
  OrnithDiff = { M.diff, "Show the diff of the latest or given fix", true },
  OrnithApply = { M.apply, "Apply the verified fix of the latest or given task", true },
  OrnithRollback = { M.rollback, "Restore the files from the fix's checkpoint", true },
}

function M.create()
  for name, spec in pairs(M.specs) do
    local fn, desc, takes_id = spec[1], spec[2], spec[3]
    vim.api.nvim_create_user_command(name, function(args)
      fn(args.args)
    end, { nargs = takes_id and "?" or 0, desc = desc, complete = takes_id and complete_ids or nil, force = true })
  end
end

return M
