-- llfc.tools: the tool formats of LLaMA-Factory (its `tool_format`), as text builders.
--
-- A template's format_tools turns the dataset's `tools` (a JSON list of function schemas)
-- into text appended to the system message; its format_function turns an assistant's
-- function call (JSON {"name": ..., "arguments": {...}} or a list of them) into the text
-- the model learns to emit. Each format here writes exactly what LLaMA-Factory 0.9.5 writes
-- for the same JSON, so the token ids match.
--
--   local tools = require "llfc.tools"
--   local fmt = tools.get("qwen")                      -- error if unknown
--   fmt.tool_text(json_list_of_tools, {date = "26 Jul 2024"})
--   fmt.function_text({ {name = "f", arguments = '{"x": 1}'} })
--
-- Formats: default, glm4, llama3, mistral, qwen, qwen3_5, glm4_moe, ling, lfm2, minimax1,
-- minimax2, seed_oss.

local json = require "llfc.json"

local tools = {}

-- ---------------------------------------------------------------------------------------
-- helpers shared by the formats

local function fail(fmt, ...) error(string.format(fmt, ...), 0) end

local function show(v)
  local ok, s = pcall(json.encode, v)
  return ok and s or tostring(v)
end

local function need_object(v, what)
  if not json.is_object(v) then fail("%s must be a JSON object, got %s", what, show(v)) end
  return v
end

-- The function schema inside an OpenAI-style {"type": "function", "function": {...}} entry;
-- `missing` is what Python's tool.get("function", missing) gives when the key is absent.
local function unwrap(tool, missing)
  need_object(tool, "each tool")
  if tool:get("type") == "function" then
    local f = tool:get("function")
    if f == nil then f = missing end
    return f
  end
  return tool
end

-- The entry as an OpenAI-style {"type": "function", "function": tool}.
local function wrap(tool)
  need_object(tool, "each tool")
  if tool:get("type") == "function" then return tool end
  local w = json.object()
  w:set("type", "function")
  w:set("function", tool)
  return w
end

local function field(obj, key, what)
  if not json.is_object(obj) then fail("%s must be a JSON object", what) end
  local v = obj:get(key)
  if v == nil then fail("%s has no key '%s'", what, key) end
  return v
end

local function get(obj, key, default)
  if not json.is_object(obj) then fail("expected a JSON object, got %s", show(obj)) end
  local v = obj:get(key)
  if v == nil then return default end
  return v
end

-- Parsed arguments of a function call (they were written by json.dumps, so they parse).
local function args_of(call) return json.decode(call.arguments) end

local function items_of(obj, what)
  if not json.is_object(obj) then fail("%s must be a JSON object", what) end
  local i = 0
  return function()
    i = i + 1
    local k = obj.keys[i]
    if k ~= nil then return k, obj.map[k] end
  end
end

-- A value as Python writes it into a prompt: strings as they are, others as JSON.
local function str_or_json(v)
  if type(v) == "string" then return v end
  return json.encode(v)
end

local function join_map(list, f, sep)
  local out = {}
  for i, x in ipairs(list) do out[i] = f(x) end
  return table.concat(out, sep)
end

local function array_items(v, what)
  if not json.is_array(v) then fail("%s must be a JSON list", what) end
  local out = {}
  for i = 1, v.n do out[i] = v[i] end
  return out
end

-- ---------------------------------------------------------------------------------------
-- default: "Action: name\nAction Input: {...}"

local DEFAULT_PROMPT_HEAD = "You have access to the following tools:\n"
local DEFAULT_PROMPT_MID = "Use the following format if using a tool:\n```\nAction: tool name (one of ["
local DEFAULT_PROMPT_TAIL = "])\nAction Input: the input to the tool, in a JSON format representing the kwargs "
  .. '(e.g. ```{"input": "hello world", "num_beams": 5}```)\n```\n'

-- Python's `x in list` for a JSON list, object (its keys) or string (a substring).
local function contains(list, x)
  if json.is_array(list) then
    for i = 1, list.n do if list[i] == x then return true end end
  elseif json.is_object(list) then
    return list:get(x) ~= nil
  elseif type(list) == "string" then
    return list:find(x, 1, true) ~= nil
  end
  return false
end

tools.default = {
  tool_text = function(list)
    local text, names = {}, {}
    for _, tool in ipairs(array_items(list, "tools")) do
      tool = unwrap(tool, "")
      local params = field(tool, "parameters", "a tool")
      local param_text = {}
      for name, param in items_of(field(params, "properties", "a tool's parameters"), "properties") do
        local required, enum, items = "", "", ""
        if contains(get(params, "required", json.array()), name) then required = ", required" end
        local e = get(param, "enum", json.null)
        if json.truthy(e) then
          local parts = {}
          for i, v in ipairs(array_items(e, "enum")) do
            if type(v) ~= "string" then fail("enum of '%s' must list strings", name) end
            parts[i] = v
          end
          enum = ", should be one of [" .. table.concat(parts, ", ") .. "]"
        end
        local it = get(param, "items", json.null)
        if json.truthy(it) then
          items = ", where each item should be " .. json.py_str(get(it, "type", ""))
        end
        param_text[#param_text + 1] = "  - " .. name .. " (" .. json.py_str(get(param, "type", "")) .. required
          .. "): " .. json.py_str(get(param, "description", "")) .. enum .. items .. "\n"
      end
      local tname = json.py_str(field(tool, "name", "a tool"))
      text[#text + 1] = "> Tool Name: " .. tname .. "\nTool Description: "
        .. json.py_str(get(tool, "description", "")) .. "\nTool Args:\n" .. table.concat(param_text) .. "\n"
      names[#names + 1] = tname
    end
    return DEFAULT_PROMPT_HEAD .. table.concat(text) .. DEFAULT_PROMPT_MID .. table.concat(names, ", ")
      .. DEFAULT_PROMPT_TAIL
  end,
  function_text = function(calls)
    return join_map(calls, function(c)
      return "Action: " .. json.py_str(c.name) .. "\nAction Input: " .. c.arguments
    end, "\n")
  end,
}

-- ---------------------------------------------------------------------------------------
-- glm4: Chinese system prompt, one "## name" section per tool, "name\n{args}" calls

local GLM4_PROMPT = "你是一个名为 ChatGLM 的人工智能助手。你是基于智谱 AI 公司训练的语言模型 GLM-4 模型开发的，"
  .. "你的任务是针对用户的问题和要求提供适当的答复和支持。\n\n# 可用工具"

tools.glm4 = {
  tool_text = function(list)
    local text = {}
    for _, tool in ipairs(array_items(list, "tools")) do
      tool = unwrap(tool, "")
      text[#text + 1] = "\n\n## " .. json.py_str(field(tool, "name", "a tool")) .. "\n\n" .. json.encode(tool, 4)
        .. "\n在调用上述函数时，请使用 Json 格式表示调用的参数。"
    end
    return GLM4_PROMPT .. table.concat(text)
  end,
  function_text = function(calls)
    if #calls > 1 then fail("GLM-4 does not support parallel functions.") end
    return json.py_str(calls[1].name) .. "\n" .. calls[1].arguments
  end,
}

-- ---------------------------------------------------------------------------------------
-- llama3: JSON tool schemas after a dated preamble; calls as {"name", "parameters"}

tools.llama3 = {
  -- opts.date: "%d %b %Y" of the day the data is processed (LLaMA-Factory uses today's date).
  tool_text = function(list, opts)
    local date = opts and opts.date
    if not date then
      date = (os and os.date) and os.date("%d %b %Y") or error("llama3 tool format needs opts.date", 0)
    end
    local text = {}
    for _, tool in ipairs(array_items(list, "tools")) do text[#text + 1] = json.encode(wrap(tool), 4) .. "\n\n" end
    return "Cutting Knowledge Date: December 2023\nToday Date: " .. date .. "\n\n"
      .. "You have access to the following functions. To call a function, please respond with JSON for a "
      .. 'function call. Respond in the format {"name": function name, "parameters": dictionary of argument '
      .. 'name and its value}. Do not use variables.\n\n' .. table.concat(text)
  end,
  function_text = function(calls)
    local objs = json.array()
    for i, c in ipairs(calls) do
      local o = json.object()
      o:set("name", c.name)
      o:set("parameters", args_of(c))
      objs[i] = o
    end
    objs.n = #calls
    return json.encode(#calls == 1 and objs[1] or objs)
  end,
}

-- ---------------------------------------------------------------------------------------
-- mistral: [AVAILABLE_TOOLS] [...] [/AVAILABLE_TOOLS]; calls as a JSON list

local function name_args_list(calls, name_key, args_key)
  local objs = json.array()
  for i, c in ipairs(calls) do
    local o = json.object()
    o:set(name_key, c.name)
    o:set(args_key, args_of(c))
    objs[i] = o
  end
  objs.n = #calls
  return objs
end

tools.mistral = {
  tool_text = function(list)
    local wrapped = json.array()
    for i, tool in ipairs(array_items(list, "tools")) do wrapped[i] = wrap(tool) end
    wrapped.n = list.n
    return "[AVAILABLE_TOOLS] " .. json.encode(wrapped) .. "[/AVAILABLE_TOOLS]"
  end,
  function_text = function(calls) return json.encode(name_args_list(calls, "name", "arguments")) end,
}

-- ---------------------------------------------------------------------------------------
-- qwen (Qwen2.5 / Qwen3): <tools> schemas </tools>; <tool_call>\n{...}\n</tool_call>

local QWEN_HEAD = "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
  .. "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
local QWEN_TAIL = "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
  .. "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
  .. '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'

local function wrapped_lines(list)
  local text = {}
  for _, tool in ipairs(array_items(list, "tools")) do text[#text + 1] = "\n" .. json.encode(wrap(tool)) end
  return table.concat(text)
end

local function qwen_calls(calls)
  local objs = name_args_list(calls, "name", "arguments")
  local out = {}
  for i = 1, objs.n do out[i] = "<tool_call>\n" .. json.encode(objs[i]) .. "\n</tool_call>" end
  return table.concat(out, "\n")
end

tools.qwen = {
  tool_text = function(list) return QWEN_HEAD .. wrapped_lines(list) .. QWEN_TAIL end,
  function_text = qwen_calls,
}

-- ling (Ling v2): qwen's prompt without the leading blank lines, "detailed thinking off" after.
tools.ling = {
  tool_text = function(list)
    return QWEN_HEAD:sub(3) .. wrapped_lines(list) .. QWEN_TAIL .. "\ndetailed thinking off"
  end,
  function_text = qwen_calls,
}

-- ---------------------------------------------------------------------------------------
-- qwen3_5: XML-style <function=name><parameter=key> calls

local QWEN35_TAIL = "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO "
  .. "suffix:\n\n<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n"
  .. "</parameter>\n<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\n"
  .. "multiple lines\n</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n"
  .. "- Function calls MUST follow the specified format: an inner <function=...></function> block must be "
  .. "nested within <tool_call></tool_call> XML tags\n- Required parameters MUST be specified\n"
  .. "- You may provide optional reasoning for your function call in natural language BEFORE the function "
  .. "call, but NOT after\n- If there is no function call available, answer the question like normal with "
  .. "your current knowledge and do not tell the user about function calls\n</IMPORTANT>"

tools.qwen3_5 = {
  tool_text = function(list)
    local text = {}
    for _, tool in ipairs(array_items(list, "tools")) do
      local t = tool
      if json.is_object(tool) and tool:get("type") == "function" and tool:get("function") ~= nil then
        t = tool:get("function")
      end
      text[#text + 1] = "\n" .. json.encode(t)
    end
    return "\n\n# Tools\n\nYou have access to the following functions:\n\n<tools>" .. table.concat(text)
      .. QWEN35_TAIL
  end,
  function_text = function(calls)
    return join_map(calls, function(c)
      local s = { "<tool_call>\n<function=" .. json.py_str(c.name) .. ">" }
      for k, v in items_of(args_of(c), "arguments") do
        s[#s + 1] = "\n<parameter=" .. k .. ">\n" .. str_or_json(v) .. "\n</parameter>"
      end
      s[#s + 1] = "\n</function>\n</tool_call>"
      return table.concat(s)
    end, "\n")
  end,
}

-- ---------------------------------------------------------------------------------------
-- glm4_moe (GLM-4.5): qwen-style schemas; <tool_call>name<arg_key>k</arg_key><arg_value>v...

tools.glm4_moe = {
  tool_text = function(list)
    return QWEN_HEAD .. wrapped_lines(list) .. "\n</tools>\n\nFor each function call, output the function "
      .. "name and arguments within the following XML format:\n<tool_call>{function-name}"
      .. "\n<arg_key>{arg-key-1}</arg_key>\n<arg_value>{arg-value-1}</arg_value>"
      .. "\n<arg_key>{arg-key-2}</arg_key>\n<arg_value>{arg-value-2}</arg_value>\n...\n</tool_call>\n"
  end,
  function_text = function(calls)
    return join_map(calls, function(c)
      local s = { "\n<tool_call>" .. json.py_str(c.name) }
      for k, v in items_of(args_of(c), "arguments") do
        s[#s + 1] = "\n<arg_key>" .. k .. "</arg_key>\n<arg_value>" .. str_or_json(v) .. "</arg_value>"
      end
      return table.concat(s)
    end, "\n")
  end,
}

-- ---------------------------------------------------------------------------------------
-- seed_oss

tools.seed_oss = {
  tool_text = function(list)
    return "system\nYou are Doubao, a helpful AI assistant. You may call one or more functions to assist with "
      .. "the user query.Tool List:\nYou are authorized to use the following tools (described in JSON Schema "
      .. "format). Before performing any task, you must decide how to call them based on the descriptions and "
      .. "parameters of these tools.\n" .. json.encode(list)
      .. "\n工具调用请遵循如下格式:\n<seed:tool_call>\n<function=example_function_name>\n"
      .. "<parameter=example_parameter_1>value_1</parameter>\n<parameter=example_parameter_2>This is the value "
      .. "for the second parameter\nthat can span\nmultiple lines</parameter>\n</function>\n</seed:tool_call>\n"
  end,
  function_text = function(calls)
    return join_map(calls, function(c)
      local s = { "\n<seed:tool_call>\n<function=" .. json.py_str(c.name) }
      for k, v in items_of(args_of(c), "arguments") do
        s[#s + 1] = "\n<parameter=" .. k .. ">" .. str_or_json(v) .. "</parameter>"
      end
      s[#s + 1] = "\n</function>\n</seed:tool_call>"
      return table.concat(s)
    end, "\n")
  end,
}

-- ---------------------------------------------------------------------------------------
-- lfm2 (LFM2.5): pythonic calls name(key="v", n=1)

tools.lfm2 = {
  tool_text = function(list)
    local out = json.array()
    for i, tool in ipairs(array_items(list, "tools")) do
      local t = tool
      if json.is_object(tool) and tool:get("type") == "function" and tool:get("function") ~= nil then
        t = tool:get("function")
      end
      out[i] = t
    end
    out.n = list.n
    return "List of tools: <|tool_list_start|>" .. json.encode(out) .. "<|tool_list_end|>"
  end,
  function_text = function(calls)
    local parts = join_map(calls, function(c)
      local kw = {}
      for k, v in items_of(args_of(c), "arguments") do
        kw[#kw + 1] = type(v) == "string" and (k .. '="' .. v .. '"') or (k .. "=" .. json.encode(v))
      end
      return json.py_str(c.name) .. "(" .. table.concat(kw, ", ") .. ")"
    end, ", ")
    return "<|tool_call_start|>[" .. parts .. "]<|tool_call_end|>"
  end,
}

-- ---------------------------------------------------------------------------------------
-- minimax1 / minimax2

tools.minimax1 = {
  tool_text = function(list)
    local text = {}
    for _, tool in ipairs(array_items(list, "tools")) do text[#text + 1] = json.encode(unwrap(tool, "")) .. "\n" end
    return "You are provided with these tools:\n<tools>\n" .. table.concat(text) .. "</tools>\n\n"
      .. "If you need to call tools, please respond with <tool_calls></tool_calls> XML tags, and provide "
      .. "tool-name and json-object of arguments, following the format below:\n<tool_calls>\n"
      .. '{"name": <tool-name-1>, "arguments": <args-json-object-1>}\n...\n</tool_calls>'
  end,
  function_text = function(calls)
    local objs = name_args_list(calls, "name", "arguments")
    local out = {}
    for i = 1, objs.n do out[i] = json.encode(objs[i]) end
    return "<tool_calls>\n" .. table.concat(out, "\n") .. "\n</tool_calls>"
  end,
}

tools.minimax2 = {
  tool_text = function(list)
    local text = {}
    for _, tool in ipairs(array_items(list, "tools")) do
      text[#text + 1] = "<tool>" .. json.encode(unwrap(tool, "")) .. "</tool>\n"
    end
    return "\n\n# Tools\n\nYou may call one or more tools to assist with the user query.\n"
      .. "Here are the tools available in JSONSchema format:\n\n<tools>\n" .. table.concat(text) .. "</tools>\n\n"
      .. "When making tool calls, use XML format to invoke tools and pass parameters:\n"
      .. '\n<minimax:tool_call>\n<invoke name="tool-name-1">\n<parameter name="param-key-1">param-value-1'
      .. '</parameter>\n<parameter name="param-key-2">param-value-2</parameter>\n...\n</invoke>\n'
      .. "</minimax:tool_call>"
  end,
  function_text = function(calls)
    return join_map(calls, function(c)
      local s = { '<invoke name="' .. json.py_str(c.name) .. '">' }
      for k, v in items_of(args_of(c), "arguments") do
        s[#s + 1] = '\n<parameter name="' .. k .. '">' .. str_or_json(v) .. "</parameter>"
      end
      s[#s + 1] = "\n</invoke>"
      return table.concat(s)
    end, "\n")
  end,
}

-- ---------------------------------------------------------------------------------------

function tools.get(name)
  local f = type(name) == "string" and rawget(tools, name)
  if type(f) ~= "table" then
    local names = {}
    for k, v in pairs(tools) do if type(v) == "table" then names[#names + 1] = k end end
    table.sort(names)
    fail("unknown tool_format '%s'; known: %s", tostring(name), table.concat(names, ", "))
  end
  return f
end

return tools
