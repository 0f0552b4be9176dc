--- Scratch buffers (plan, diff) and the status float.
local M = {}

--- Fill the scratch buffer called `name` with `lines`, creating it on first use.
--- It is shown in a split unless `opts.show == false` or it is already visible.
function M.scratch(name, lines, opts)
  opts = opts or {}
  local bufnr = vim.fn.bufnr(name)
  if bufnr == -1 then
    bufnr = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_name(bufnr, name)
    vim.bo[bufnr].buftype = "nofile"
    vim.bo[bufnr].bufhidden = "hide"
    vim.bo[bufnr].swapfile = false
  end
  if opts.filetype then
    vim.bo[bufnr].filetype = opts.filetype
  end
  vim.bo[bufnr].modifiable = true
  vim.api.nvim_buf_set_lines(bufnr, 0, -1, false, lines)
  vim.bo[bufnr].modifiable = false
  vim.bo[bufnr].modified = false
  if opts.show ~= false and vim.fn.bufwinid(bufnr) == -1 then
    vim.cmd("botright split")
    vim.api.nvim_win_set_buf(0, bufnr)
  end
  return bufnr
end

local function add(lines, text)
  for line in tostring(text):gmatch("[^\n]+") do
    lines[#lines + 1] = line
  end
end

--- The scaffold as readable text.  `info` is what the client knows about the
--- task (state.tasks[id], possibly merged with ornith.showPlan's answer).
function M.plan_lines(id, info)
  local lines = { ("Ornith plan  [%s]"):format(id) }
  if info.title then
    add(lines, info.title)
  end
  local status = info.status or "running"
  if info.step and info.step ~= "" and status == "running" then
    status = status .. " - " .. info.step
  elseif info.reason and info.reason ~= "" then
    status = status .. " - " .. info.reason
  end
  add(lines, "status: " .. status)
  local s = info.scaffold
  if type(s) ~= "table" then
    lines[#lines + 1] = ""
    lines[#lines + 1] = "no plan yet"
    return lines
  end
  if info.replan and info.replan ~= vim.NIL then
    add(lines, "replanned: " .. tostring(info.replan))
  end
  lines[#lines + 1] = ""
  add(lines, "Goal:     " .. tostring(s.goal or ""))
  add(lines, "Strategy: " .. tostring(s.strategy or ""))
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Steps:"
  for i, step in ipairs(s.steps or {}) do
    local tools = table.concat(step.tools or {}, ", ")
    local check = type(step.check) == "table" and step.check.kind or ""
    add(lines, ("  %d. %s  [%s]  check: %s"):format(i, step.intent or "", tools, check))
  end
  if type(s.budget) == "table" then
    lines[#lines + 1] = ""
    add(lines, ("Budget:   %s turns, %s tokens"):format(s.budget.turns or "?", s.budget.tokens or "?"))
  end
  return lines
end

--- ornith.backendStatus as "key: value" lines, the interesting keys first.
function M.status_lines(status)
  local lines, seen = {}, {}
  local first = { "state", "health", "kind", "model", "context_length", "endpoint", "restarts", "log_path", "error" }
  local function put(key)
    local value = status[key]
    if value == nil or value == vim.NIL or seen[key] then
      return
    end
    seen[key] = true
    if key == "command" and vim.islist(value) then
      value = table.concat(value, " ")
    end
    if type(value) ~= "table" then
      lines[#lines + 1] = ("%-15s %s"):format(key .. ":", tostring(value))
    elseif vim.islist(value) then
      lines[#lines + 1] = key .. ":"
      for _, item in ipairs(value) do
        lines[#lines + 1] = "  - " .. tostring(item):gsub("\n", " ")
      end
    else
      lines[#lines + 1] = ("%-15s %s"):format(key .. ":", vim.inspect(value, { newline = " ", indent = "" }))
    end
  end
  for _, key in ipairs(first) do
    put(key)
  end
  local rest = vim.tbl_keys(status)
  table.sort(rest)
  for _, key in ipairs(rest) do
    put(key)
  end
  return lines
end

function M.float(lines, title)
  return vim.lsp.util.open_floating_preview(lines, "text", {
    border = "rounded", title = title, focus_id = "ornith", wrap = true,
    max_width = math.floor(vim.o.columns * 0.8), max_height = math.floor(vim.o.lines * 0.8),
  })
end

return M
