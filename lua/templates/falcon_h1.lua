-- falcon_h1: Falcon-H1 (ChatML-like with <|im_start|>).
return {
  name = "falcon_h1",
  format_user = { "<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n" },
  format_assistant = { "{{content}}<|im_end|>\n" },
  format_system = { "<|im_start|>system\n{{content}}<|im_end|>\n" },
  format_observation = { "<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n" },
  format_prefix = { { "bos_token" } },
  stop_words = { "<|im_end|>", "<|end_of_text|>" },
}
