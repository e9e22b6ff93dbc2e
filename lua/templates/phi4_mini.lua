-- phi4_mini: Phi-4-mini, <|system|>...<|end|><|user|>...<|end|><|assistant|>.
return {
  name = "phi4_mini",
  format_user = { "<|user|>{{content}}<|end|><|assistant|>" },
  format_assistant = { "{{content}}<|end|>" },
  format_system = { "<|system|>{{content}}<|end|>" },
  format_tools = { "<|tool|>{{content}}<|/tool|>" }, -- the tools JSON as the data has it
  stop_words = { "<|end|>" },
  replace_eos = true,
}
