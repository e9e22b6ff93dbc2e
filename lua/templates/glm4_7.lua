-- glm4_7: GLM-4.7: reasoning with </think> alone as the empty thought; glm4_moe tools.
return {
  name = "glm4_7",
  kind = "glm47_reasoning",
  format_user = { "<|user|>\n{{content}}<|assistant|>" },
  format_assistant = { "\n{{content}}" },
  format_system = { "<|system|>\n{{content}}" },
  format_function = { "{{content}}", tool_format = "glm4_moe" },
  format_observation = { "<|observation|>\n{{content}}<|assistant|>" },
  format_tools = { tool_format = "glm4_moe" },
  format_prefix = { "[gMASK]<sop>" },
  stop_words = { "<|user|>", "<|observation|>" },
  thought_words = { "<think>", "</think>" },
  efficient_eos = true,
}
