-- mistral_small: Mistral Small 3.x (text only here), [SYSTEM_PROMPT] blocks; mistral tools.
return {
  name = "mistral_small",
  format_user = { "[INST]{{content}}[/INST]" },
  format_system = { "[SYSTEM_PROMPT]{{content}}[/SYSTEM_PROMPT]" },
  format_function = { "[TOOL_CALLS]{{content}}", { "eos_token" }, tool_format = "mistral" },
  format_observation = { "[TOOL_RESULTS]{\"content\": {{content}}}[/TOOL_RESULTS]" },
  format_tools = { tool_format = "mistral" },
  format_prefix = { { "bos_token" } },
  mm_plugin = "pixtral", -- images and videos are not supported yet: text only
}
