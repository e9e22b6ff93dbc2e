-- moonlight: Moonshot Moonlight (Kimi-style <|im_user|> markers).
return {
  name = "moonlight",
  format_user = { "<|im_user|>user<|im_middle|>{{content}}<|im_end|><|im_assistant|>assistant<|im_middle|>" },
  format_assistant = { "{{content}}<|im_end|>" },
  format_system = { "<|im_system|>system<|im_middle|>{{content}}<|im_end|>" },
  default_system = "You are a helpful assistant provided by Moonshot-AI.",
  stop_words = { "<|im_end|>" },
  replace_eos = true,
}
