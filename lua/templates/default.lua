-- default: LLaMA-Factory's "default" template, "Human: ... Assistant:" with eos after each part.
-- Slots: a string ("{{content}}" is replaced), {"eos_token"} / {"bos_token"} (the tokenizer's
-- special token), or {token = "<|...|>"} (a token by its text), as LLaMA-Factory's formatters.
-- Function calls and tools use the "default" tool format ("Action: ...\nAction Input: ...").
return {
  name = "default",
  format_user = { "Human: {{content}}", { "eos_token" }, "\nAssistant:" },
  format_assistant = { "{{content}}", { "eos_token" }, "\n" },
  format_system = { "System: {{content}}", { "eos_token" }, "\n" },
  replace_jinja_template = true,
}
