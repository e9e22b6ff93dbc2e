-- llfc.template: a chat template (lua/templates/NAME.lua) applied to a conversation, giving
-- the pieces LLaMA-Factory's Template.encode_multiturn / encode_oneturn tokenize.
--
--   local template = require "llfc.template"
--   local tpl = template.load(file_text, "lua/templates/qwen3.lua", { enable_thinking = true })
--   local turns = template.encode_multiturn(tpl, messages, system, tools)
--   -- turns[k] = { prompt = PIECES, response = PIECES }, one per user/assistant pair
--   local prompt, response = template.encode_oneturn(tpl, messages, system, tools)
--
-- messages: { {role = "user"|"assistant"|"function"|"observation", content = "..."}, ... },
-- alternating prompt (user/observation) and response (assistant/function), even in number.
-- system, tools: strings or nil (tools is the dataset's JSON list of function schemas).
--
-- PIECES is a list of what the tokenizer stage encodes one by one, in order, and concatenates:
--   {text = "..."}           tokenizer.encode(text, add_special_tokens=False); never empty
--   {special = "eos_token"}  the tokenizer's eos id (after template.special_tokens); "bos_token"
--                            likewise, and nothing at all if the tokenizer has no such token
--   {token = "<|im_end|>"}   the id of that token text (convert_tokens_to_ids)
-- Text pieces are never merged: LLaMA-Factory tokenizes each slot string on its own, and
-- merging two pieces could change the tokens at the seam.
--
-- The template table is documented in lua/templates/README.md. The rules mirrored from
-- LLaMA-Factory 0.9.5 (data/template.py, formatter.py) are noted where they apply.

local json = require "llfc.json"
local tools_mod = require "llfc.tools"

local template = {}

-- ---------------------------------------------------------------------------------------
-- plain-text helpers (no patterns: template strings are full of magic characters)

-- s with the first occurrence of old replaced by new (Python's str.replace(old, new, 1)).
local function replace_first(s, old, new)
  local i, j = s:find(old, 1, true)
  if not i then return s end
  return s:sub(1, i - 1) .. new .. s:sub(j + 1)
end

-- s with every occurrence of old replaced (Python's str.replace(old, new)); old non-empty.
local function replace_all(s, old, new)
  local out, pos = {}, 1
  while true do
    local i, j = s:find(old, pos, true)
    if not i then break end
    out[#out + 1] = s:sub(pos, i - 1)
    out[#out + 1] = new
    pos = j + 1
  end
  out[#out + 1] = s:sub(pos)
  return table.concat(out)
end

-- The first a..b span (shortest b after the first a that has one), as re.search(a(.*?)b, DOTALL):
-- returns start, stop (inclusive) and the text between, or nil.
local function find_span(s, a, b)
  local i, j = s:find(a, 1, true)
  if not i then return nil end
  local k, l = s:find(b, j + 1, true)
  if not k then return nil end
  return i, l, s:sub(j + 1, k - 1)
end

-- Python's str.strip() for the ASCII whitespace that thought words use.
local function strip(s) return (s:gsub("^[ \t\n\r\v\f]+", ""):gsub("[ \t\n\r\v\f]+$", "")) end

local function contains(s, sub) return s:find(sub, 1, true) ~= nil end

local function fail(fmt, ...) error(string.format(fmt, ...), 0) end

-- ---------------------------------------------------------------------------------------
-- reading a template table: check it, fill LLaMA-Factory's defaults (register_template)

local KEYS = {
  name = "string", kind = "string",
  format_user = "slots", format_assistant = "slots", format_system = "slots",
  format_function = "slots", format_observation = "slots", format_tools = "slots",
  format_prefix = "slots", default_system = "string", stop_words = "strings",
  thought_words = "strings", tool_call_words = "strings", efficient_eos = "boolean",
  replace_eos = "boolean", replace_jinja_template = "boolean", enable_thinking = "boolean",
  preserve_thinking = "boolean", mm_plugin = "string",
}
local KINDS = { default = true, llama2 = true, reasoning = true, glm47_reasoning = true }
local SPECIALS = { eos_token = true, bos_token = true }

local function edit_distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

local function did_you_mean(word, choices)
  local best, bestd = nil, math.huge
  for c in pairs(choices) do
    local d = edit_distance(word, c)
    if d < bestd or (d == bestd and c < best) then best, bestd = c, d end
  end
  if best and bestd <= math.max(2, #word // 3) then return "; did you mean '" .. best .. "'?" end
  return ""
end

local function has_placeholder(slots)
  for _, s in ipairs(slots) do
    if type(s) == "string" and s:find("{{[%a_][%w_]*}}") then return true end
  end
  return false
end

-- One slot of a template file -> a normalized slot: a string, {special=...} or {token=...}.
local function read_slot(src, key, i, slot)
  if type(slot) == "string" then return slot end
  if type(slot) == "table" then
    if type(slot.token) == "string" and #slot == 0 then return { token = slot.token } end
    if #slot == 1 and SPECIALS[slot[1]] and next(slot, 1) == nil then return { special = slot[1] } end
    if type(slot.special) == "string" and SPECIALS[slot.special] then return { special = slot.special } end
  end
  fail('%s: %s[%d]: a slot is a string, {"eos_token"}, {"bos_token"} or {token = "<|...|>"}', src, key, i)
end

-- A formatter: its slots, plus tool_format for format_function / format_tools.
local function read_formatter(src, key, spec)
  local f = { slots = {}, tool_format = spec.tool_format }
  for k in pairs(spec) do
    if math.type(k) ~= "integer" and k ~= "tool_format" then
      fail("%s: %s: unknown field '%s' (a formatter lists slots, and may set tool_format)", src, key, tostring(k))
    end
  end
  if f.tool_format ~= nil then
    if key ~= "format_function" and key ~= "format_tools" then
      fail("%s: %s: only format_function and format_tools take a tool_format", src, key)
    end
    local ok, e = pcall(tools_mod.get, f.tool_format) -- unknown names fail, listing the known ones
    if not ok then fail("%s: %s: %s", src, key, e) end
  end
  for i, slot in ipairs(spec) do f.slots[i] = read_slot(src, key, i, slot) end
  if key == "format_tools" and #f.slots > 0 and f.tool_format then
    fail("%s: format_tools is either slots (the tools JSON as is) or a tool_format, not both", src)
  end
  if key == "format_prefix" then
    if has_placeholder(f.slots) then fail("%s: format_prefix takes no {{placeholder}}", src) end
  elseif (key ~= "format_tools" or #f.slots > 0) and not has_placeholder(f.slots) then
    fail("%s: %s needs a {{content}} placeholder in one of its strings", src, key)
  end
  return f
end

local function check_type(src, key, want, v)
  local ok
  if want == "slots" then ok = type(v) == "table"
  elseif want == "strings" then
    ok = type(v) == "table"
    for _, s in ipairs(ok and v or {}) do ok = ok and type(s) == "string" end
  else ok = type(v) == want end
  if not ok then
    local what = ({ slots = "a list of slots", strings = "a list of strings" })[want] or ("a " .. want)
    fail("%s: %s must be %s, got %s", src, key, what, type(v))
  end
end

local function copy_strings(t)
  local out = {}
  for i, s in ipairs(t or {}) do out[i] = s end
  return out
end

-- Build a template from the table a template file returns.
-- opts (all optional), mirroring LLaMA-Factory's get_template_and_fix_tokenizer and data args:
--   source           name used in messages (the template file's path)
--   tool_format      replaces format_function / format_tools with that tool format
--   default_system   replaces the template's default system prompt
--   enable_thinking  true | false | "none" (Python None): reasoning templates only; default true
--   preserve_thinking  keep earlier turns' thoughts in encode_oneturn (reasoning templates)
--   train_on_prompt  refused for efficient_eos templates, as LLaMA-Factory does
--   date             "26 Jul 2024": the date the llama3 tool prompt names (default: today)
function template.new(def, opts)
  opts = opts or {}
  local src = opts.source or (type(def) == "table" and def.name) or "template"
  if type(def) ~= "table" then fail("%s: a template file must return a table, got %s", src, type(def)) end
  for k, v in pairs(def) do
    if type(k) ~= "string" or not KEYS[k] then
      fail("%s: unknown key '%s'%s", src, tostring(k), type(k) == "string" and did_you_mean(k, KEYS) or "")
    end
    check_type(src, k, KEYS[k], v)
  end
  local kind = def.kind or "default"
  if not KINDS[kind] then fail("%s: unknown kind '%s'%s", src, kind, did_you_mean(kind, KINDS)) end
  for _, k in ipairs { "thought_words", "tool_call_words" } do
    if def[k] and #def[k] ~= 2 then fail("%s: %s must list 2 strings (open, close)", src, k) end
  end

  local function formatter(key) return def[key] and read_formatter(src, key, def[key]) end
  local efficient_eos = def.efficient_eos or false
  local default_slots = efficient_eos and { "{{content}}" } or { "{{content}}", { special = "eos_token" } }
  local t = {
    name = def.name or src,
    kind = kind,
    format_user = formatter("format_user"),
    format_assistant = formatter("format_assistant"),
    format_system = formatter("format_system"),
    format_function = formatter("format_function"),
    format_observation = formatter("format_observation"),
    format_tools = formatter("format_tools"),
    format_prefix = formatter("format_prefix") or { slots = {} },
    default_system = def.default_system or "",
    stop_words = copy_strings(def.stop_words),
    thought_words = def.thought_words and copy_strings(def.thought_words) or { "<think>\n", "\n</think>\n\n" },
    tool_call_words = def.tool_call_words and copy_strings(def.tool_call_words) or { "<tool_call>", "</tool_call>" },
    efficient_eos = efficient_eos,
    replace_eos = def.replace_eos or false,
    replace_jinja_template = def.replace_jinja_template or false,
    enable_thinking = def.enable_thinking ~= false,
    preserve_thinking = def.preserve_thinking or false,
    date = opts.date,
  }
  -- register_template's defaults: note that the system and observation defaults differ.
  local user_default = { slots = { "{{content}}" } }
  t.format_function = t.format_function
    or { slots = (t.format_assistant or { slots = default_slots }).slots, tool_format = "default" }
  t.format_observation = t.format_observation or t.format_user or user_default
  t.format_user = t.format_user or user_default
  t.format_assistant = t.format_assistant or { slots = default_slots }
  t.format_system = t.format_system or user_default
  t.format_tools = t.format_tools or { slots = {} }
  t.format_function.tool_format = t.format_function.tool_format or "default"
  if #t.format_tools.slots == 0 then t.format_tools.tool_format = t.format_tools.tool_format or "default" end

  if opts.train_on_prompt and t.efficient_eos then
    fail("%s: this template (efficient_eos) does not support `train_on_prompt`", src)
  end
  if opts.tool_format ~= nil then
    local ok, e = pcall(tools_mod.get, opts.tool_format)
    if not ok then fail("%s: %s", src, e) end
    t.format_function = { slots = default_slots, tool_format = opts.tool_format }
    t.format_tools = { slots = {}, tool_format = opts.tool_format }
  end
  if opts.default_system ~= nil then t.default_system = opts.default_system end
  if kind == "reasoning" or kind == "glm47_reasoning" then
    local e = opts.enable_thinking
    if e == nil then e = true end
    if e ~= true and e ~= false and e ~= "none" then fail("enable_thinking must be true, false or none") end
    t.enable_thinking = e
    t.preserve_thinking = opts.preserve_thinking or false
  end
  return t
end

-- Load a template from the text of its file (the host reads the file). The chunk sees only
-- string, table, math, utf8 and a few base functions: a template is data, not a program.
function template.load(src, chunkname, opts)
  local env = { string = string, table = table, math = math, utf8 = utf8, ipairs = ipairs, pairs = pairs,
    tostring = tostring, tonumber = tonumber, type = type, select = select, error = error }
  local chunk, err = load(src, "@" .. chunkname, "t", env)
  if not chunk then error(err, 0) end
  local ok, def = pcall(chunk)
  if not ok then error(def, 0) end
  local o = { source = chunkname }
  for k, v in pairs(opts or {}) do o[k] = v end
  return template.new(def, o)
end

-- ---------------------------------------------------------------------------------------
-- formatters (LLaMA-Factory's Formatter.apply): slots in, elements out

-- StringFormatter / EmptyFormatter: each {{name}} replaced once, in the order of kw.
local function apply(f, kw)
  local out = {}
  for i, slot in ipairs(f.slots) do
    if type(slot) == "string" then
      for _, pair in ipairs(kw or {}) do
        if type(pair[2]) ~= "string" then fail("expected a string for {{%s}}, got %s", pair[1], type(pair[2])) end
        slot = replace_first(slot, "{{" .. pair[1] .. "}}", pair[2])
      end
    end
    out[i] = slot
  end
  return out
end

-- The tool prompt for the dataset's tools JSON. A format_tools with slots is a plain string
-- formatter: the JSON goes in as it is, and its first slot is the prompt (phi4_mini). Else the
-- tool format writes it (ToolFormatter): "" for an empty list.
local function tool_text(t, tools)
  if #t.format_tools.slots > 0 then
    local first = apply(t.format_tools, { { "content", tools } })[1]
    if type(first) ~= "string" then fail("%s: format_tools must start with a string", t.name) end
    return first
  end
  local ok, list = pcall(json.decode, tools)
  if not ok then fail("Invalid JSON format in tool description: %s (%s)", tools, list) end
  local n = json.is_array(list) and list.n or json.is_object(list) and #list.keys or nil
  if n == 0 then return "" end
  if not json.is_array(list) then fail("tool description must be a JSON list: %s", tools) end
  return tools_mod.get(t.format_tools.tool_format).tool_text(list, { date = t.date })
end

-- The calls in a function message's JSON: {"name", "arguments"} or a list of them.
local function parse_calls(text, content)
  local ok, v = pcall(json.decode, text)
  if not ok then fail("Invalid JSON format in function message: %s", content) end
  local list = json.is_array(v) and v or json.array { v }
  local calls = {}
  for i = 1, list.n do
    local c = list[i]
    if not json.is_object(c) or c:get("name") == nil or c:get("arguments") == nil then
      fail("a function call needs \"name\" and \"arguments\": %s", content)
    end
    calls[i] = { name = c:get("name"), arguments = json.encode(c:get("arguments")) }
  end
  return calls
end

-- FunctionFormatter: a function message -> its slots around the tool format's call text.
-- Text around a tool_call_words span (or a thought_words span) is kept in front of the calls.
local function apply_function(f, content, thought_words, tool_call_words)
  local fmt = tools_mod.get(f.tool_format)
  local text
  local i, j, inner
  if tool_call_words and #tool_call_words == 2 then
    i, j, inner = find_span(content, tool_call_words[1], tool_call_words[2])
  end
  if i then
    local whole = content:sub(i, j)
    text = replace_all(content, whole, "") .. fmt.function_text(parse_calls(inner, content))
  else
    local ti, tj
    if thought_words and #thought_words == 2 then ti, tj = find_span(content, thought_words[1], thought_words[2]) end
    if ti then
      local thought = content:sub(ti, tj)
      text = thought .. fmt.function_text(parse_calls(replace_all(content, thought, ""), content))
    else
      text = fmt.function_text(parse_calls(content, content))
    end
  end
  return apply(f, { { "content", text } })
end

-- ---------------------------------------------------------------------------------------
-- encoding a conversation (Template._encode and its subclasses)

-- Elements -> pieces: strings become text pieces (empty ones vanish, as they encode to nothing).
local function pieces_of(elements)
  local out = {}
  for _, e in ipairs(elements) do
    if type(e) == "string" then
      if e ~= "" then out[#out + 1] = { text = e } end
    elseif e.special then
      out[#out + 1] = { special = e.special }
    else
      out[#out + 1] = { token = e.token }
    end
  end
  return out
end

local function append(dst, src)
  for _, x in ipairs(src) do dst[#dst + 1] = x end
  return dst
end

local function check_messages(messages)
  if type(messages) ~= "table" or #messages == 0 then fail("a conversation needs at least one message pair") end
  if #messages % 2 ~= 0 then fail("a conversation needs prompt/response pairs, got %d messages", #messages) end
  for i, m in ipairs(messages) do
    if type(m) ~= "table" or type(m.content) ~= "string" then
      fail("message %d: content must be a string", i)
    end
  end
end

local function copy_messages(messages)
  local out = {}
  for i, m in ipairs(messages) do out[i] = { role = m.role, content = m.content } end
  return out
end

-- One list of pieces per message. Turn 0: prefix + system (+ tools) + message; later: message.
-- The llama2 kind fuses the system text into the first user message instead.
local function encode(t, messages, system, tools)
  if system == nil or system == "" then system = t.default_system end
  local has_tools = tools ~= nil and tools ~= ""
  if tools ~= nil and type(tools) ~= "string" then fail("tools must be a JSON string") end
  local fused = t.kind == "llama2"
  local out = {}
  for i, m in ipairs(messages) do
    local el = {}
    local system_text = ""
    if i == 1 then
      append(el, apply(t.format_prefix))
      if system ~= "" or has_tools then
        local content = system .. (has_tools and tool_text(t, tools) or "")
        local sys = apply(t.format_system, { { "content", content } })
        if fused then
          system_text = sys[1]
          if type(system_text) ~= "string" then fail("%s: format_system must start with a string", t.name) end
        else
          append(el, sys)
        end
      end
    end
    local role, c = m.role, m.content
    if role == "user" then
      if fused then
        append(el, apply(t.format_user, { { "content", system_text .. c } }))
      else
        append(el, apply(t.format_user, { { "content", c }, { "idx", tostring((i - 1) // 2) } }))
      end
    elseif role == "assistant" then
      append(el, apply(t.format_assistant, { { "content", c } }))
    elseif role == "observation" then
      append(el, apply(t.format_observation, { { "content", c } }))
    elseif role == "function" then
      if fused then
        append(el, apply_function(t.format_function, c))
      else
        append(el, apply_function(t.format_function, c, t.thought_words, t.tool_call_words))
      end
    else
      fail("Unexpected role: %s", tostring(role))
    end
    out[i] = pieces_of(el)
  end
  return out
end

-- ---------------------------------------------------------------------------------------
-- thoughts (ReasoningTemplate)

local function is_reasoning(t) return t.kind == "reasoning" or t.kind == "glm47_reasoning" end

-- Content without any thought span; leading newlines dropped (remove_thought).
local function remove_thought(t, content)
  local a, b = t.thought_words[1], t.thought_words[2]
  local out, pos = {}, 1
  while true do
    local i, j = content:find(a, pos, true)
    if not i then break end
    local k, l = content:find(b, j + 1, true)
    if not k then break end
    out[#out + 1] = content:sub(pos, i - 1)
    pos = l + 1
  end
  out[#out + 1] = content:sub(pos)
  return (table.concat(out):gsub("^\n+", ""))
end

-- The pieces of an empty thought, "<think>\n\n</think>\n\n" (glm47: the closing words alone).
local function empty_thought(t)
  if t.kind == "glm47_reasoning" then return { { text = t.thought_words[2] } } end
  return { { text = t.thought_words[1] .. t.thought_words[2] } }
end

local function has_thought(t, content)
  return contains(content, strip(t.thought_words[1])) or contains(content, strip(t.thought_words[2]))
end

local function thinking_off(t) return t.enable_thinking == false end      -- Python: `is False`
local function thinking_falsy(t) return t.enable_thinking ~= true end     -- Python: `not x`

-- ---------------------------------------------------------------------------------------
-- the two entry points

-- Turns as LLaMA-Factory's encode_multiturn gives them: { {prompt=, response=}, ... }.
-- discarding_history_cot (reasoning templates): drop the thoughts of all but the last turn
-- and add the empty thought to the last turn only; LLaMA-Factory's supervised stage passes
-- mask_history and not preserve_thinking.
function template.encode_multiturn(t, messages, system, tools, discarding_history_cot)
  check_messages(messages)
  local enc
  if is_reasoning(t) then
    messages = copy_messages(messages)
    local n = #messages
    if thinking_off(t) then
      for i = 2, n, 2 do messages[i].content = remove_thought(t, messages[i].content) end
    end
    if discarding_history_cot then
      for i = 2, n - 2, 2 do messages[i].content = remove_thought(t, messages[i].content) end
    end
    enc = encode(t, messages, system, tools)
    local first = discarding_history_cot and n - 1 or 1
    for i = first, n, 2 do
      if not has_thought(t, messages[i + 1].content) then
        if thinking_falsy(t) then
          append(enc[i], empty_thought(t))
        else
          enc[i + 1] = append(empty_thought(t), enc[i + 1])
        end
      end
    end
  else
    enc = encode(t, messages, system, tools)
  end
  local turns = {}
  for i = 1, #enc, 2 do turns[#turns + 1] = { prompt = enc[i], response = enc[i + 1] } end
  return turns
end

-- The whole conversation as one prompt and the last response (encode_oneturn: pairwise,
-- KTO and unsupervised stages).
function template.encode_oneturn(t, messages, system, tools)
  check_messages(messages)
  local n = #messages
  if is_reasoning(t) then
    messages = copy_messages(messages)
    if not t.preserve_thinking then
      for i = 2, n - 2, 2 do messages[i].content = remove_thought(t, messages[i].content) end
    end
    if thinking_off(t) then messages[n].content = remove_thought(t, messages[n].content) end
  end
  local enc = encode(t, messages, system, tools)
  local prompt = {}
  for i = 1, n - 1 do append(prompt, enc[i]) end
  local response = enc[n]
  if is_reasoning(t) and not has_thought(t, messages[n].content) then
    if thinking_falsy(t) then
      append(prompt, empty_thought(t))
    else
      response = append(empty_thought(t), response)
    end
  end
  return prompt, response
end

-- ---------------------------------------------------------------------------------------
-- the tokenizer's special tokens (fix_special_tokens)

-- tok: { eos_token = "</s>" or nil, pad_token = ... or nil } as the tokenizer has them.
-- Returns { eos_token, pad_token, stop_words }: the eos to use (stop_words[1] when replace_eos,
-- "<|endoftext|>" when the tokenizer has none), the pad (the eos when the tokenizer has none),
-- and the remaining stop words, to be added as special tokens.
function template.special_tokens(t, tok)
  local stop = copy_strings(t.stop_words)
  local eos = tok.eos_token
  if t.replace_eos then
    if #stop == 0 then fail("%s: stop words are required to replace the EOS token", t.name) end
    eos = table.remove(stop, 1)
  end
  if eos == nil then eos = "<|endoftext|>" end
  return { eos_token = eos, pad_token = tok.pad_token or eos, stop_words = stop }
end

-- Pieces as one string, for previews and messages: specials as their token text when
-- given in tok ({eos_token = ..., bos_token = ...}), else as <eos_token> / <bos_token>.
function template.to_text(pieces, tok)
  local out = {}
  for i, p in ipairs(pieces) do
    if p.text then out[i] = p.text
    elseif p.token then out[i] = p.token
    else out[i] = (tok and tok[p.special]) or ("<" .. p.special .. ">") end
  end
  return table.concat(out)
end

return template
