-- mistral: Mistral / Mixtral instruct (v0.3 style tools), <s>[INST] query[/INST] answer</s>.
-- kind "llama2": the system text goes inside the first user message.
return {
  name = "mistral",
  kind = "llama2",
  format_user = { "[INST] {{content}}[/INST]" },
  format_assistant = { " {{content}}", { "eos_token" } },
  format_system = { "{{content}}\n\n" },
  format_function = { "[TOOL_CALLS] {{content}}", { "eos_token" }, tool_format = "mistral" },
  format_observation = { '[TOOL_RESULTS] {"content": {{content}}}[/TOOL_RESULTS]' },
  format_tools = { tool_format = "mistral" },
  format_prefix = { { "bos_token" } },
}
