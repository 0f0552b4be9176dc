--- Work-done progress from the server ($/progress, seen through the LspProgress
--- autocmd) turned into one short statusline string.
local M = {
  --- token -> { title, message, seq }
  active = {},
  --- the last finished piece of work: { title, message }
  last = nil,
}

local seq = 0
local MAX = 60

local function is_ornith(client_id)
  local client = vim.lsp.get_client_by_id(client_id)
  return client ~= nil and client.name == "ornith"
end

local function shorten(text)
  text = (text or ""):gsub("%s+", " ")
  if vim.fn.strchars(text) > MAX then
    return vim.fn.strcharpart(text, 0, MAX - 1) .. "…"
  end
  return text
end

function M.on_progress(ev)
  local data = ev.data or {}
  if not data.params or not is_ornith(data.client_id) then
    return
  end
  local token, value = tostring(data.params.token), data.params.value
  if type(value) ~= "table" then
    return
  end
  if value.kind == "begin" then
    seq = seq + 1
    M.active[token] = { title = value.title or "", message = value.message, seq = seq }
  elseif value.kind == "report" and M.active[token] then
    M.active[token].message = value.message or M.active[token].message
  elseif value.kind == "end" then
    local work = M.active[token] or {}
    M.active[token] = nil
    M.last = { title = work.title or "", message = value.message or "done" }
  end
  pcall(vim.cmd.redrawstatus)
end

--- The newest running piece of work ("Ornith: fix test_add: step 2/3: fix add (+1)"),
--- else the outcome of the last one, else "Ornith" when a client runs, else "".
function M.statusline()
  local newest, count = nil, 0
  for _, work in pairs(M.active) do
    count = count + 1
    if not newest or work.seq > newest.seq then
      newest = work
    end
  end
  if newest then
    local text = newest.title:gsub("^Ornith:%s*", "")
    if newest.message and newest.message ~= "" then
      text = text .. ": " .. newest.message
    end
    local more = count > 1 and (" (+%d)"):format(count - 1) or ""
    return "Ornith: " .. shorten(text) .. more
  end
  if #vim.lsp.get_clients({ name = "ornith" }) == 0 then
    return ""
  end
  if M.last then
    return "Ornith: " .. shorten(M.last.message)
  end
  return "Ornith"
end

function M.attach()
  local group = vim.api.nvim_create_augroup("ornith.progress", { clear = true })
  vim.api.nvim_create_autocmd("LspProgress", { group = group, callback = M.on_progress })
end

return M
