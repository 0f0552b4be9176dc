-- Test init for tests/test_neovim_client.py: the plugin from this checkout,
-- set up from $OLSP_NVIM_SETUP = {"rtp": ..., "cmd": [...], "settings": {...}}.
local setup = vim.json.decode((assert(os.getenv("OLSP_NVIM_SETUP"), "OLSP_NVIM_SETUP is not set")))
vim.opt.runtimepath:prepend(setup.rtp)
vim.opt.swapfile = false
vim.o.laststatus = 2
vim.o.statusline = "%f %m%=%{v:lua.require'ornith'.statusline()} "
vim.cmd.runtime("plugin/ornith.lua")

require("ornith").setup({
  cmd = setup.cmd,
  settings = setup.settings,
  on_fix_done = function(result)
    table.insert(_G.fix_done, result)
  end,
})

-- What the tests read back: every ornith/fixDone, and the statusline at each $/progress.
_G.fix_done = {}
_G.progress_seen = {}
vim.api.nvim_create_autocmd("LspProgress", {
  callback = function(ev)
    local value = ev.data.params.value or {}
    table.insert(_G.progress_seen, {
      kind = value.kind, title = value.title, message = value.message,
      statusline = require("ornith").statusline(),
    })
  end,
})
-- Every message the plugin or the server showed, for failure reports.
_G.notes = {}
local notify = vim.notify
vim.notify = function(msg, level, opts)
  table.insert(_G.notes, msg)
  return notify(msg, level, opts)
end
