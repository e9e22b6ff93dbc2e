-- llama3: Llama 3 / 3.1 / 3.2 / 3.3 instruct, header blocks ended by <|eot_id|>.
-- Tool results are "ipython" turns; the tool prompt names today's date (llama3 tool format).
return {
  name = "llama3",
  format_user = {
    "<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|>"
      .. "<|start_header_id|>assistant<|end_header_id|>\n\n",
  },
  format_assistant = { "{{content}}<|eot_id|>" },
  format_system = { "<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>" },
  format_function = { "{{content}}<|eot_id|>", tool_format = "llama3" },
  format_observation = {
    "<|start_header_id|>ipython<|end_header_id|>\n\n{{content}}<|eot_id|>"
      .. "<|start_header_id|>assistant<|end_header_id|>\n\n",
  },
  format_tools = { tool_format = "llama3" },
  format_prefix = { { "bos_token" } },
  stop_words = { "<|eot_id|>", "<|eom_id|>" },
  replace_eos = true,
}
