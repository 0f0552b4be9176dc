-- Test init for test_enable_without_setup: the plugin's folder on 'runtimepath'
-- and vim.lsp.enable("ornith"), as a user's init.lua on Neovim >= 0.11 may say;
-- require("ornith").setup() is never called.
local setup = vim.json.decode((assert(os.getenv("OLSP_NVIM_SETUP"), "OLSP_NVIM_SETUP is not set")))
vim.opt.runtimepath:prepend(setup.rtp)
vim.opt.swapfile = false
vim.lsp.enable("ornith")

-- Every message the plugin or the server showed, for failure reports.
_G.notes = {}
local notify = vim.notify
vim.notify = function(msg, level, opts)
  table.insert(_G.notes, msg)
  return notify(msg, level, opts)
end
