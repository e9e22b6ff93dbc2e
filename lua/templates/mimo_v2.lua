-- mimo_v2: Xiaomi MiMo v2 (reasoning); qwen tools.
return {
  name = "mimo_v2",
  kind = "reasoning",
  format_user = { "<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n" },
  format_assistant = { "{{content}}<|im_end|>\n" },
  format_system = { "<|im_start|>system\n{{content}}<|im_end|>\n" },
  format_function = { "{{content}}<|im_end|>\n", tool_format = "qwen" },
  format_observation = {
    "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
  },
  format_tools = { tool_format = "qwen" },
  default_system = "You are MiMo, a helpful AI assistant engineered by Xiaomi.",
  stop_words = { "<|im_end|>" },
  thought_words = { "<think>", "</think>" },
  replace_eos = true,
}
