-- hook.lua - a data hook: llfc calls transform(example) for every record before templating.
-- Return the example (changed or not) to keep it, or nil to drop it; dropped records are
-- counted in the run's log. Runs in llfc's Lua sandbox: no os.execute, no io.popen, files
-- readable only inside dataset_dir and this folder.
local M = {}

function M.transform(example)
  -- drop empty answers, trim whitespace around the instruction
  if not example.output or example.output:match("^%s*$") then
    return nil
  end
  example.instruction = example.instruction:gsub("^%s+", ""):gsub("%s+$", "")
  return example
end

return M
