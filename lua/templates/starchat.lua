-- starchat: StarChat, <|user|> ... <|end|>.
return {
  name = "starchat",
  format_user = { "<|user|>\n{{content}}<|end|>\n<|assistant|>" },
  format_assistant = { "{{content}}<|end|>\n" },
  format_system = { "<|system|>\n{{content}}<|end|>\n" },
  stop_words = { "<|end|>" },
}
