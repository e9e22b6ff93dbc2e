-- llama4: Llama 4 (text), <|header_start|>role<|header_end|>; llama3 tools.
return {
  name = "llama4",
  format_user = {
    "<|header_start|>user<|header_end|>\n\n{{content}}<|eot|><|header_start|>assistant<|header_end|>\n\n",
  },
  format_assistant = { "{{content}}<|eot|>" },
  format_system = { "<|header_start|>system<|header_end|>\n\n{{content}}<|eot|>" },
  format_function = { "{{content}}<|eot|>", tool_format = "llama3" },
  format_observation = {
    "<|header_start|>ipython<|header_end|>\n\n{{content}}<|eot|><|header_start|>assistant<|header_end|>\n\n",
  },
  format_tools = { tool_format = "llama3" },
  format_prefix = { { "bos_token" } },
  stop_words = { "<|eot|>", "<|eom|>" },
  replace_eos = true,
  mm_plugin = "llama4", -- images and videos are not supported yet: text only
}
