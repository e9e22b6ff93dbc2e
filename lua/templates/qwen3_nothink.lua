-- qwen3_nothink: Qwen3 Instruct-2507 and other non-thinking Qwen3 models: qwen3's strings
-- without the reasoning rules (no empty thought is added; <think> text passes through).
return {
  name = "qwen3_nothink",
  format_user = { "<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n" },
  format_assistant = { "{{content}}<|im_end|>\n" },
  format_system = { "<|im_start|>system\n{{content}}<|im_end|>\n" },
  format_function = { "{{content}}<|im_end|>\n", tool_format = "qwen" },
  format_observation = {
    "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
  },
  format_tools = { tool_format = "qwen" },
  stop_words = { "<|im_end|>" },
  replace_eos = true,
}
