-- qwen3: Qwen3 (hybrid thinking). A reasoning template: a response without a <think> block
-- gets the empty thought "<think>\n\n</think>\n\n" in front of it (trained on, when
-- enable_thinking is true) or at the end of its prompt (not trained on, when false); with
-- enable_thinking false, thoughts in the data are removed first.
return {
  name = "qwen3",
  kind = "reasoning",
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
