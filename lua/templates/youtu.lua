-- youtu: Tencent Youtu-LLM (reasoning).
return {
  name = "youtu",
  kind = "reasoning",
  format_user = { "<|User|>{{content}}<|Assistant|>" },
  format_assistant = { "{{content}}<|end_of_text|>" },
  format_function = { "{{content}}" },
  format_observation = { "<tool_response>\n{{content}}\n</tool_response><|Assistant|>" },
  format_prefix = { { "bos_token" } },
  stop_words = { "<|end_of_text|>" },
  replace_eos = true,
}
