-- qwen3_5: Qwen3.5 (reasoning; text only here); qwen3_5 tools.
return {
  name = "qwen3_5",
  kind = "reasoning",
  format_user = { "<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n" },
  format_assistant = { "{{content}}<|im_end|>\n" },
  format_system = { "<|im_start|>system\n{{content}}<|im_end|>\n" },
  format_function = { "{{content}}<|im_end|>\n", tool_format = "qwen3_5" },
  format_observation = {
    "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
  },
  format_tools = { tool_format = "qwen3_5" },
  stop_words = { "<|im_end|>" },
  replace_eos = true,
  mm_plugin = "qwen3_vl", -- images and videos are not supported yet: text only
}
