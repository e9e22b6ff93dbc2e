-- ministral: Ministral 8B instruct; mistral tools.
return {
  name = "ministral",
  kind = "llama2",
  format_user = { "[INST]{{content}}[/INST]" },
  format_system = { "{{content}}\n\n" },
  format_function = { "[TOOL_CALLS]{{content}}", { "eos_token" }, tool_format = "mistral" },
  format_observation = { "[TOOL_RESULTS]{\"content\": {{content}}}[/TOOL_RESULTS]" },
  format_tools = { tool_format = "mistral" },
  format_prefix = { { "bos_token" } },
}
