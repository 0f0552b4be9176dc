--- ornith-lsp for Neovim >= 0.11: a verified-fix agent behind code actions.
--- See |ornith| for the user's view; this module wires the LSP client.
local config = require("ornith.config")
local state = require("ornith.state")

local M = {}

local function present(value)
  return value ~= nil and value ~= vim.NIL
end

local LEVELS = { vim.log.levels.ERROR, vim.log.levels.WARN, vim.log.levels.INFO, vim.log.levels.DEBUG }

--- Handlers for the server's notifications; they are part of the client
--- config, so they see only ornith's messages.
M.handlers = {
  -- Through vim.notify, so notification plugins show them; Neovim's default
  -- echoes "LSP[ornith][Info] ...\n", whose extra line forces a hit-enter prompt.
  ["window/showMessage"] = function(_, result)
    vim.notify(result.message, LEVELS[result.type] or vim.log.levels.INFO, { title = "ornith" })
    return result
  end,
  ["ornith/plan"] = function(_, result)
    if type(result) ~= "table" or not result.taskId then
      return
    end
    state.touch(result.taskId, {
      scaffold = result.scaffold,
      replan = present(result.replan) and result.replan or nil,
      status = "running",
      step = "",
    })
    require("ornith.commands").refresh_plan()
  end,
  ["ornith/step"] = function(_, result)
    if type(result) ~= "table" or not result.taskId then
      return
    end
    state.touch(result.taskId, {
      step = ("step %d/%d: %s"):format(result.index, result.of, result.intent),
      status = "running",
    })
    require("ornith.commands").refresh_plan()
  end,
  -- Neovim 0.11 has no handler of its own for this request: fetch and show the
  -- lenses (one "Ornith: fix <test>" per failing test) of this client's buffers.
  ["workspace/codeLens/refresh"] = function(_, _, ctx)
    local client = vim.lsp.get_client_by_id(ctx.client_id)
    for bufnr in pairs(client and client.attached_buffers or {}) do
      vim.lsp.codelens.refresh({ bufnr = bufnr })
    end
    return vim.NIL
  end,
  ["ornith/fixDone"] = function(_, result, ctx)
    if type(result) ~= "table" or not result.taskId then
      return
    end
    state.touch(result.taskId, {
      title = result.title ~= "" and result.title or nil,
      status = result.status,
      reason = result.reason,
      verified = result.verified,
    })
    require("ornith.commands").refresh_plan()
    local on_fix_done = config.options.on_fix_done
    if on_fix_done then
      on_fix_done(result, vim.lsp.get_client_by_id(ctx.client_id))
    end
  end,
}

--- JSON needs an object here; an empty Lua table would be sent as [].
local function settings_object(settings)
  return next(settings) and settings or vim.empty_dict()
end

--- The table given to vim.lsp.config("ornith", ...).
function M.lsp_config(opts)
  local base = {
    cmd = opts.cmd,
    filetypes = opts.filetypes,
    root_markers = opts.root_markers,
    handlers = M.handlers,
    capabilities = { workspace = { codeLens = { refreshSupport = true } } },
  }
  local cfg = vim.tbl_deep_extend("force", base, opts.lsp or {})
  cfg.init_options = { ornith = settings_object(opts.settings) }
  -- Neovim sends `settings` with workspace/didChangeConfiguration after initialize.
  cfg.settings = { ornith = settings_object(opts.settings) }
  return cfg
end

function M.setup(opts)
  local options = config.set(opts)
  vim.lsp.config("ornith", M.lsp_config(options))
  vim.lsp.enable("ornith")
  require("ornith.progress").attach()
  require("ornith.commands").create()
  M.configured = true
end

--- For 'statusline': what Ornith is doing now, or "" when it is not running.
function M.statusline()
  return require("ornith.progress").statusline()
end

return M
