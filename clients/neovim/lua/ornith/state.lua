--- What the client remembers about fixes, fed by the server's notifications
--- and command results; the plan buffer and the statusline read it.
local M = {
  --- taskId -> { title?, status?, step?, reason?, verified?, scaffold?, replan? }
  tasks = {},
  --- The task the user most recently started or heard about.
  latest = nil,
}

function M.task(id)
  M.tasks[id] = M.tasks[id] or {}
  return M.tasks[id]
end

function M.touch(id, fields)
  local task = M.task(id)
  for k, v in pairs(fields or {}) do
    task[k] = v
  end
  M.latest = id
  return task
end

function M.ids()
  return vim.tbl_keys(M.tasks)
end

return M
