-- glm4: GLM-4 chat, <|user|>\n ... <|assistant|>; glm4 tools.
return {
  name = "glm4",
  format_user = { "<|user|>\n{{content}}<|assistant|>" },
  format_assistant = { "\n{{content}}" },
  format_system = { "<|system|>\n{{content}}" },
  format_function = { "{{content}}", tool_format = "glm4" },
  format_observation = { "<|observation|>\n{{content}}<|assistant|>" },
  format_tools = { tool_format = "glm4" },
  format_prefix = { "[gMASK]<sop>" },
  stop_words = { "<|user|>", "<|observation|>" },
  efficient_eos = true,
}
