-- chatml_de: ChatML with a German default system prompt.
return {
  name = "chatml_de",
  format_user = { "<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n" },
  format_assistant = { "{{content}}<|im_end|>\n" },
  format_system = { "<|im_start|>system\n{{content}}<|im_end|>\n" },
  format_observation = { "<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n" },
  default_system = "Du bist ein freundlicher und hilfsbereiter KI-Assistent.",
  stop_words = { "<|im_end|>", "<|im_start|>" },
  replace_eos = true,
  replace_jinja_template = true,
}
