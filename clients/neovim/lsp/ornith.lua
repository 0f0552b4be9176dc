-- ornith-lsp for Neovim >= 0.11 without require("ornith").setup():
--
--   vim.lsp.enable("ornith")
--
-- finds this file on 'runtimepath' (the plugin's folder, or a copy in your
-- config's lsp/ folder) and starts `ornith-lsp serve` for Python buffers under
-- a folder holding ornith.toml, pyproject.toml or .git.  Change any field with
-- vim.lsp.config("ornith", { ... }); setup() does the same with its options.
-- With the plugin on 'runtimepath' the client also gets its handlers (the
-- plan window, fix notifications), exactly as setup() gives them.
local ok, ornith = pcall(require, "ornith")
if ok then
  return ornith.lsp_config(require("ornith.config").defaults)
end
return {
  cmd = { "ornith-lsp", "serve" },
  filetypes = { "python" },
  root_markers = { "ornith.toml", "pyproject.toml", ".git" },
  init_options = { ornith = vim.empty_dict() },
  settings = { ornith = vim.empty_dict() },
}
