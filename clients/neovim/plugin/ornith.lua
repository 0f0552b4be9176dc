-- The :Ornith* commands exist as soon as the plugin is on 'runtimepath';
-- the language server itself starts only after require("ornith").setup().
if vim.g.loaded_ornith then
  return
end
vim.g.loaded_ornith = true

if vim.fn.has("nvim-0.11") == 0 then
  vim.notify_once("ornith.nvim needs Neovim >= 0.11 (vim.lsp.config / vim.lsp.enable)", vim.log.levels.ERROR)
  return
end

require("ornith.commands").create()
