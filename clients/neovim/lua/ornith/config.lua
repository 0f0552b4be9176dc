--- Options for require("ornith").setup(); see |ornith-setup|.
local M = {}

M.defaults = {
  -- How Neovim starts the language server (stdio).
  cmd = { "ornith-lsp", "serve" },
  filetypes = { "python" },
  -- Searched upwards from the buffer, in this order of preference.
  root_markers = { "ornith.toml", "pyproject.toml", ".git" },
  -- Server settings, the same keys as ornith.toml ({ backend = { kind = "remote", ... } }).
  -- Sent as initializationOptions { ornith = settings } and with
  -- workspace/didChangeConfiguration.
  settings = {},
  -- function(result, client): called on every ornith/fixDone notification,
  -- result = { taskId, status, reason, verified }.
  on_fix_done = nil,
  -- Merged into the vim.lsp.config("ornith", ...) table as-is (capabilities, on_attach, flags, ...).
  lsp = {},
}

M.options = vim.deepcopy(M.defaults)

function M.set(opts)
  opts = opts or {}
  vim.validate("cmd", opts.cmd, "table", true)
  vim.validate("filetypes", opts.filetypes, "table", true)
  vim.validate("root_markers", opts.root_markers, "table", true)
  vim.validate("settings", opts.settings, "table", true)
  vim.validate("on_fix_done", opts.on_fix_done, "function", true)
  vim.validate("lsp", opts.lsp, "table", true)
  -- Lists are replaced, not merged index by index.
  M.options = vim.tbl_extend("force", vim.deepcopy(M.defaults), opts)
  return M.options
end

return M
