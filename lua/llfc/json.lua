-- llfc.json: JSON as Python's json module reads and writes it, for tool calls in templates.
--
-- LLaMA-Factory builds tool prompts and function calls with json.loads / json.dumps
-- (ensure_ascii=False), so the exact text the model trains on depends on Python's rules:
-- object keys keep their order, a repeated key keeps its first place and its last value,
-- "1.0" stays a float and prints as 1.0, "1E2" prints as 100.0, "-0" is the int 0, floats print
-- as Python's repr (shortest round-trip digits, 1e-05, 1e+16), NaN / Infinity are accepted.
--
--   local json = require "llfc.json"
--   local v = json.decode('{"b": 1, "a": [1.50, null]}')   -- error(msg) on bad input
--   json.encode(v)            --> '{"b": 1, "a": [1.5, null]}'
--   json.encode(v, 4)         --> indented like json.dumps(v, indent=4)
--
-- Values: null is json.null; arrays are json.array{...} (they remember being arrays even when
-- empty); objects are json.object() with :set(k, v), :get(k), .keys (in order); integers that
-- do not fit 64 bits are json.bigint("123...") and print unchanged.

local json = {}

local null_mt = { __name = "json.null", __tostring = function() return "null" end }
json.null = setmetatable({}, null_mt)

local array_mt = { __name = "json.array" }
local object_mt = { __name = "json.object" }
local bigint_mt = { __name = "json.bigint" }
object_mt.__index = object_mt

function json.array(t)
  t = t or {}
  t.n = t.n or #t
  return setmetatable(t, array_mt)
end

function json.object()
  return setmetatable({ keys = {}, map = {} }, object_mt)
end

function json.bigint(digits) return setmetatable({ digits = digits }, bigint_mt) end

-- Python dict semantics: a new key goes last, an existing key keeps its place.
function object_mt:set(k, v)
  if self.map[k] == nil then self.keys[#self.keys + 1] = k end
  self.map[k] = v
end

function object_mt:get(k) return self.map[k] end

function json.kind(v)
  local t = type(v)
  if t == "table" then
    local mt = getmetatable(v)
    if mt == null_mt then return "null" end
    if mt == array_mt then return "array" end
    if mt == object_mt then return "object" end
    if mt == bigint_mt then return "number" end
    return "table"
  end
  return t
end

function json.is_array(v) return getmetatable(v) == array_mt end
function json.is_object(v) return getmetatable(v) == object_mt end

-- ---------------------------------------------------------------------------------------
-- decode

local function utf8_of(cp)
  -- Lone surrogates are kept (Python allows them in str); encoded as 3 bytes like WTF-8.
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then return string.char(0xC0 | (cp >> 6), 0x80 | (cp & 0x3F)) end
  if cp < 0x10000 then
    return string.char(0xE0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3F), 0x80 | (cp & 0x3F))
  end
  return string.char(0xF0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3F), 0x80 | ((cp >> 6) & 0x3F),
    0x80 | (cp & 0x3F))
end

local escapes = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local function fail(s, pos, what)
  local line, col = 1, 1
  for i = 1, pos - 1 do
    if s:byte(i) == 10 then line, col = line + 1, 1 else col = col + 1 end
  end
  error(string.format("invalid JSON: %s at line %d column %d (char %d)", what, line, col, pos - 1), 0)
end

local function skip_ws(s, pos)
  return s:find("[^ \t\n\r]", pos) or #s + 1
end

local parse_value

local function parse_string(s, pos) -- pos at the opening quote
  local out, i = {}, pos + 1
  while true do
    local j = s:find('["\\\0-\31]', i) -- DEL (127) is allowed raw, as in Python
    if not j then fail(s, pos, "unterminated string starting") end
    out[#out + 1] = s:sub(i, j - 1)
    local c = s:sub(j, j)
    if c == '"' then return table.concat(out), j + 1 end
    if c ~= "\\" then fail(s, j, "invalid control character") end
    local e = s:sub(j + 1, j + 1)
    if e == "u" then
      local hex = s:match("^%x%x%x%x", j + 2)
      if not hex then fail(s, j, "invalid \\uXXXX escape") end
      local cp, nexti = tonumber(hex, 16), j + 6
      if cp >= 0xD800 and cp <= 0xDBFF then
        local lo = s:match("^\\u(%x%x%x%x)", nexti)
        local lv = lo and tonumber(lo, 16)
        if lv and lv >= 0xDC00 and lv <= 0xDFFF then
          cp, nexti = 0x10000 + ((cp - 0xD800) << 10) + (lv - 0xDC00), nexti + 6
        end
      end
      out[#out + 1] = utf8_of(cp)
      i = nexti
    elseif escapes[e] then
      out[#out + 1] = escapes[e]
      i = j + 2
    else
      fail(s, j, "invalid \\escape")
    end
  end
end

local function parse_number(s, pos)
  local int = s:match("^-?0", pos) or s:match("^-?[1-9]%d*", pos)
  if not int then return nil end
  local frac = s:match("^%.%d+", pos + #int) or ""
  local exp = s:match("^[eE][-+]?%d+", pos + #int + #frac) or ""
  local nextpos = pos + #int + #frac + #exp
  if frac == "" and exp == "" then
    if int == "-0" then return 0, nextpos end
    local v = math.tointeger(tonumber(int))
    if v and tostring(v) == int then return v, nextpos end
    return json.bigint(int), nextpos
  end
  return tonumber(int .. frac .. exp), nextpos -- has "." or "e": a float, -0.0 kept
end

local function parse_array(s, pos)
  local arr, n = json.array(), 0
  pos = skip_ws(s, pos + 1)
  if s:sub(pos, pos) == "]" then return arr, pos + 1 end
  while true do
    local v
    v, pos = parse_value(s, pos)
    n = n + 1
    arr[n] = v
    pos = skip_ws(s, pos)
    local c = s:sub(pos, pos)
    if c == "]" then arr.n = n return arr, pos + 1 end
    if c ~= "," then fail(s, pos, "expecting ',' delimiter") end
    pos = skip_ws(s, pos + 1)
  end
end

local function parse_object(s, pos)
  local obj = json.object()
  pos = skip_ws(s, pos + 1)
  if s:sub(pos, pos) == "}" then return obj, pos + 1 end
  while true do
    if s:sub(pos, pos) ~= '"' then fail(s, pos, "expecting property name enclosed in double quotes") end
    local k
    k, pos = parse_string(s, pos)
    pos = skip_ws(s, pos)
    if s:sub(pos, pos) ~= ":" then fail(s, pos, "expecting ':' delimiter") end
    local v
    v, pos = parse_value(s, skip_ws(s, pos + 1))
    obj:set(k, v)
    pos = skip_ws(s, pos)
    local c = s:sub(pos, pos)
    if c == "}" then return obj, pos + 1 end
    if c ~= "," then fail(s, pos, "expecting ',' delimiter") end
    pos = skip_ws(s, pos + 1)
  end
end

local literals = {
  { "true", true }, { "false", false }, { "null", json.null },
  { "NaN", 0.0 / 0.0 }, { "Infinity", math.huge }, { "-Infinity", -math.huge },
}

function parse_value(s, pos)
  local c = s:sub(pos, pos)
  if c == '"' then return parse_string(s, pos) end
  if c == "{" then return parse_object(s, pos) end
  if c == "[" then return parse_array(s, pos) end
  for _, lit in ipairs(literals) do
    if s:sub(pos, pos + #lit[1] - 1) == lit[1] then return lit[2], pos + #lit[1] end
  end
  local v, nextpos = parse_number(s, pos)
  if v == nil then fail(s, pos, "expecting value") end
  return v, nextpos
end

-- Parse one JSON text (whitespace around it allowed), as json.loads does.
function json.decode(s)
  if type(s) ~= "string" then error("invalid JSON: expected a string, got " .. type(s), 0) end
  local v, pos = parse_value(s, skip_ws(s, 1))
  pos = skip_ws(s, pos)
  if pos <= #s then fail(s, pos, "extra data") end
  return v
end

-- ---------------------------------------------------------------------------------------
-- encode

-- repr(float) of Python 3: the shortest digits that read back as the same double, written
-- positionally when the decimal exponent is in [-4, 16), else as d.ddde[+-]XX.
function json.float_repr(x)
  if x ~= x then return "NaN" end
  if x == math.huge then return "Infinity" end
  if x == -math.huge then return "-Infinity" end
  if x == 0 then return (1 / x < 0) and "-0.0" or "0.0" end
  local sci
  for p = 1, 17 do
    sci = string.format("%." .. (p - 1) .. "e", x)
    if tonumber(sci) == x then break end
  end
  local sign, d1, rest, e = sci:match("^(-?)(%d)%.?(%d*)e([-+]%d+)$")
  local digits = (d1 .. rest):gsub("0+$", "")
  if digits == "" then digits = "0" end
  local exp = tonumber(e) -- value = 0.d1d2... * 10^(exp+1)
  local decpt = exp + 1
  if decpt > -4 and decpt <= 16 then
    local s
    if decpt <= 0 then
      s = "0." .. string.rep("0", -decpt) .. digits
    elseif decpt >= #digits then
      s = digits .. string.rep("0", decpt - #digits) .. ".0"
    else
      s = digits:sub(1, decpt) .. "." .. digits:sub(decpt + 1)
    end
    return sign .. s
  end
  local mant = digits:sub(1, 1)
  if #digits > 1 then mant = mant .. "." .. digits:sub(2) end
  return string.format("%s%se%s%02d", sign, mant, exp < 0 and "-" or "+", math.abs(exp))
end

local str_escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
  ["\b"] = "\\b", ["\f"] = "\\f" }

-- A string literal as json.dumps(ensure_ascii=False) writes it: only '"', '\' and C0
-- controls are escaped; everything else (non-ASCII, '/', DEL) is written as is.
function json.quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == "\127" then return c end
    return str_escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function encode_value(v, indent, level, out)
  local k = json.kind(v)
  if k == "string" then
    out[#out + 1] = json.quote(v)
  elseif k == "number" then
    if type(v) == "table" then out[#out + 1] = v.digits
    elseif math.type(v) == "integer" then out[#out + 1] = tostring(v)
    else out[#out + 1] = json.float_repr(v) end
  elseif k == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif k == "null" then
    out[#out + 1] = "null"
  elseif k == "array" or k == "object" then
    local n = k == "array" and v.n or #v.keys
    local open, close = k == "array" and "[" or "{", k == "array" and "]" or "}"
    if n == 0 then out[#out + 1] = open .. close return end
    local sep, pad_in, pad_out = ", ", "", ""
    if indent then
      pad_in = "\n" .. string.rep(" ", indent * (level + 1))
      pad_out = "\n" .. string.rep(" ", indent * level)
      sep = "," .. pad_in
    end
    out[#out + 1] = open .. pad_in
    for i = 1, n do
      if i > 1 then out[#out + 1] = sep end
      if k == "array" then
        encode_value(v[i], indent, level + 1, out)
      else
        local key = v.keys[i]
        out[#out + 1] = json.quote(key) .. ": "
        encode_value(v.map[key], indent, level + 1, out)
      end
    end
    out[#out + 1] = pad_out .. close
  else
    error("cannot write a Lua " .. k .. " as JSON (use json.array / json.object)", 0)
  end
end

-- json.dumps(v, ensure_ascii=False[, indent=indent]).
function json.encode(v, indent)
  local out = {}
  encode_value(v, indent, 0, out)
  return table.concat(out)
end

-- ---------------------------------------------------------------------------------------
-- Python's str() and repr() of a decoded value, for tool prompts built with str.format().

-- Code points Python's repr() escapes beyond ASCII controls: C1 controls, NBSP, soft hyphen,
-- the Unicode spaces and format characters, surrogates, private use, BOM (a practical subset
-- of "not printable"; exact for everything tool schemas hold in practice).
local function py_unprintable(cp)
  return (cp >= 0x7F and cp <= 0xA0) or cp == 0xAD or (cp >= 0x2000 and cp <= 0x200F)
    or (cp >= 0x2028 and cp <= 0x202F) or (cp >= 0x205F and cp <= 0x206F) or cp == 0x3000
    or (cp >= 0xD800 and cp <= 0xF8FF) or cp == 0xFEFF
end

local function py_repr_str(s)
  local q = (s:find("'", 1, true) and not s:find('"', 1, true)) and '"' or "'"
  local out = {}
  local ok = pcall(function()
    for _, cp in utf8.codes(s) do
      local c = cp < 0x80 and string.char(cp) or nil
      if c == "\\" then out[#out + 1] = "\\\\"
      elseif c == q then out[#out + 1] = "\\" .. c
      elseif c == "\n" then out[#out + 1] = "\\n"
      elseif c == "\r" then out[#out + 1] = "\\r"
      elseif c == "\t" then out[#out + 1] = "\\t"
      elseif cp < 0x20 or py_unprintable(cp) then
        out[#out + 1] = string.format(cp <= 0xFF and "\\x%02x" or "\\u%04x", cp)
      else out[#out + 1] = utf8.char(cp) end
    end
  end)
  if not ok then out = { s } end -- not UTF-8: as it is
  return q .. table.concat(out) .. q
end

function json.py_repr(v)
  local k = json.kind(v)
  if k == "string" then return py_repr_str(v) end
  return json.py_str(v)
end

function json.py_str(v)
  local k = json.kind(v)
  if k == "string" then return v end
  if k == "boolean" then return v and "True" or "False" end
  if k == "null" then return "None" end
  if k == "number" then
    if type(v) == "table" then return v.digits end
    if math.type(v) == "integer" then return tostring(v) end
    local r = json.float_repr(v)
    if r == "NaN" then return "nan" elseif r == "Infinity" then return "inf" elseif r == "-Infinity" then return "-inf" end
    return r
  end
  local parts = {}
  if k == "array" then
    for i = 1, v.n do parts[i] = json.py_repr(v[i]) end
    return "[" .. table.concat(parts, ", ") .. "]"
  end
  if k == "object" then
    for i, key in ipairs(v.keys) do parts[i] = py_repr_str(key) .. ": " .. json.py_repr(v.map[key]) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return tostring(v)
end

-- Python truthiness of a decoded value.
function json.truthy(v)
  local k = json.kind(v)
  if k == "nil" or k == "null" then return false end
  if k == "boolean" then return v end
  if k == "string" then return v ~= "" end
  if k == "number" then return type(v) == "table" or v ~= 0 end
  if k == "array" then return v.n > 0 end
  if k == "object" then return #v.keys > 0 end
  return true
end

return json
